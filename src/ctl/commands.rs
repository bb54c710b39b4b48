//! spoolctl's reference: one entry per command and per option, from which
//! `spoolctl --help`, spoolctl(8) and the README's table are generated; a
//! test checks that every entry's `args` parse.

/// One command or option of spoolctl.
pub struct Entry {
    /// As an admin writes it: literal parts in backquotes, placeholders in
    /// capitals (`` `show` ID [`--body`] ``).
    pub synopsis: &'static str,
    /// One line for `--help`.
    pub help: &'static str,
    /// The reference's paragraph, `literal` text in backquotes.
    pub doc: &'static str,
    /// Command lines (after `spoolctl`) that use it, each of which parses.
    pub args: &'static [&'static str],
}

/// Every command spoolctl has.
pub const COMMANDS: &[Entry] = &[
    Entry {
        synopsis: "`list` [`--json`] [SELECTOR]",
        help: "the queue: mailq's listing with attempts and next attempt",
        doc: "The queue, as `mailq` lists it, with each message's attempts and next attempt \
              below its first line (`*` after the id: being delivered now, shown to an ordinary user on their own messages only; `!`: held). With `--json`, one JSON object per message per line, with the \
              field names of Postfix's `postqueue -j`: `queue_name` \
              (`hold` when held or its state cannot be read; `active` when being delivered or \
              due, that is never tried or its next attempt come; else `deferred`: the rule of \
              the metrics' `state`), \
              `queue_id`, `arrival_time`, `message_size`, `forced_expire` (always false), \
              `sender` (empty for `<>`), `recipients` (those still waiting, each with \
              `address`, `delay_reason` and spoolmail's `status`, `pending` or \
              `deferred`), and spoolmail's `attempts` and `next_attempt` (Unix seconds; 0 \
              for the next queue run, null while held).",
        args: &[
            "list",
            "list --json",
            "list --sender alice",
            "list --json --older-than 2d",
        ],
    },
    Entry {
        synopsis: "`show` ID [`--body`]",
        help: "one message: envelope, state per recipient, headers",
        doc: "One message: its envelope, each recipient's state with the last reply, the \
              attempts and the next one, and the message's header; with `--body`, the \
              whole message. A user who is not an admin may show only their own messages, \
              without `--body`.",
        args: &["show 6A3F2C1B0A1B2C3D", "show 6A3F2C1B0A1B2C3D --body"],
    },
    Entry {
        synopsis: "`delete` ID... | `--all` | SELECTOR",
        help: "delete messages for good (logged, no bounce)",
        doc: "Deletes the messages for good, without a bounce; the log says who did. A user \
              who is not an admin may delete only their own messages. The removals are made \
              durable by one fsync of `queue/` at the end, not one per message: a crash \
              before it may bring deleted messages back, never lose one.",
        args: &[
            "delete 6A3F2C1B0A1B2C3D",
            "delete --all",
            "delete --sender script@",
        ],
    },
    Entry {
        synopsis: "`hold` ID... | `--all` | SELECTOR",
        help: "hold messages: never delivered or expired until released",
        doc: "Puts the messages on hold, as Postfix's `postsuper -h`: queue runs neither \
              deliver nor expire them until they are released. For admins only.",
        args: &["hold 6A3F2C1B0A1B2C3D", "hold --recipient @example.com"],
    },
    Entry {
        synopsis: "`release` ID... | `--all` | SELECTOR",
        help: "release held messages",
        doc: "Releases held messages (`postsuper -H`): the next queue run takes them. Their \
              lifetime (`max_queue_lifetime`) still counts from their arrival, so a message \
              held past it is tried once more and bounced if that attempt fails too. For \
              admins only.",
        args: &["release --all", "release 6A3F2C1B0A1B2C3D"],
    },
    Entry {
        synopsis: "`retry` ID... | `--all` | SELECTOR",
        help: "retry messages at the next queue run, whatever their schedule",
        doc: "Makes the messages due (`postqueue -i`, `postsuper -r`): the next queue run \
              takes them whatever their retry schedule says; a held message stays held. A \
              user who is not an admin may retry only their own messages.",
        args: &["retry 6A3F2C1B0A1B2C3D", "retry --older-than 1h"],
    },
    Entry {
        synopsis: "`config` [`--all`]",
        help: "the configuration in effect: the values the file sets",
        doc: "The configuration, as Postfix's `postconf -n` shows it: `key = value` for \
              each key the config file sets (the last line's value, in the reference's \
              order); with `--all`, every key, those not set with their defaults. The \
              file's problems follow on standard error, one line each (exit 78).",
        args: &["config", "config --all"],
    },
    Entry {
        synopsis: "`check`",
        help: "check the config, the spool's layout, owners and modes, the secrets' too",
        doc: "Checks the config file, the spool (`spool_dir` and its `tmp/` and `queue/`: \
              there, not open to others, writable by the spool directory's group; the \
              directories, `slots/`, `sts/` and `counters` owned by root and of that group; every \
              file in `queue/` of that group) and the password, token and key files (not \
              readable by everyone, owned by root, of the spool directory's group; the \
              OAuth2 refresh token's directory writable by that group and closed to others, \
              as delivery rewrites the token there), and the `users=` names of `dkim_key` \
              and `sender_relay_map` lines that are no local user (a typo there leaves \
              that user's mail unsigned, or on another relay), and prints each problem on one line (exit 78), or `no problem found`. Root is \
              not required where the user running the check owns the spool (a spool of \
              their own).",
        args: &["check"],
    },
    Entry {
        synopsis: "`dkim-check`",
        help: "check that each dkim_key's DNS record holds its key",
        doc: "For each `dkim_key`, looks up the TXT record at \
              `SELECTOR._domainkey.DOMAIN` (through `dns_server` when set, as delivery \
              does) and prints one line: `ok` with the algorithm, or what is wrong (no \
              record, several, another key's `p=`, a revoked key, a `k=` of the other \
              algorithm, an `h=` or `s=` that leaves DKIM's use out, a key file that \
              cannot sign); `t=y` (test mode) is noted. Exit 0 when every record holds \
              its key, 78 when one does not, 75 when one could not be looked up. Run it \
              after publishing a record, before the mail it signs is judged by it. For \
              root, the spool's group and admin_group (it reads the keys).",
        args: &["dkim-check"],
    },
    Entry {
        synopsis: "`dkim-keygen` DOMAIN SELECTOR [`--ed25519`]",
        help: "make a DKIM key for DOMAIN and print its DNS record",
        doc: "Makes a DKIM signing key for mail from DOMAIN: RSA of 2048 bits (PKCS#1), or \
              Ed25519 (PKCS#8, RFC 8463) with `--ed25519`. It is written to \
              `spoolmail/dkim/DOMAIN.SELECTOR.pem` beside the config file \
              (/etc/spoolmail/dkim/ for /etc/spoolmail.conf), mode 0640 with the spool's \
              group, never over an existing file (a new key takes a new selector). Prints \
              the `dkim_key` line to add to the config and the TXT record to publish at \
              `SELECTOR._domainkey.DOMAIN`. For root, the spool's group and admin_group.",
        args: &[
            "dkim-keygen example.org mail2026",
            "dkim-keygen example.org ed2026 --ed25519",
        ],
    },
    Entry {
        synopsis: "`oauth2 authorize`",
        help: "get the smarthost's first OAuth2 refresh token (device flow)",
        doc: "Authorizes spoolmail to send as `auth_user` through the smarthost with \
              OAuth2 (the device authorization grant, RFC 8628): prints a URL and a code to \
              enter there, in any browser, as the account that sends; waits while the \
              account's owner signs in and agrees; and saves the refresh token in \
              `auth_oauth2_refresh_token_file` (mode 0640, the spool's group). Run it once \
              at set-up, and again when mailq says the refresh token was refused. For \
              root, the spool's group and admin_group. (Microsoft 365; Google's device \
              flow does not allow the Gmail scope: see the README's set-up.)",
        args: &["oauth2 authorize"],
    },
];

/// spoolctl's options.
pub const OPTIONS: &[Entry] = &[
    Entry {
        synopsis: "`-C` FILE",
        help: "another config file (drops the group privilege)",
        doc: "Reads FILE instead of the standard config file. As `sendmail -C` does, this \
              gives up the setgid group first: only a spool the caller can read and write \
              themselves can be used.",
        args: &["-C /etc/spoolmail.conf list"],
    },
    Entry {
        synopsis: "`--all`",
        help: "every message in the queue",
        doc: "Every message in the queue (every one of the caller's, for a user who is not \
              an admin).",
        args: &["hold --all"],
    },
    Entry {
        synopsis: "`--recipient` TEXT",
        help: "the messages with a recipient that contains TEXT",
        doc: "SELECTOR: the messages with a recipient whose address contains TEXT, in any \
              case (as `sendmail -qR`).",
        args: &["list --recipient example.com"],
    },
    Entry {
        synopsis: "`--sender` TEXT",
        help: "the messages whose sender contains TEXT",
        doc: "SELECTOR: the messages whose sender contains TEXT, in any case (as `sendmail \
              -qS`).",
        args: &["list --sender alice"],
    },
    Entry {
        synopsis: "`--older-than` DURATION",
        help: "the messages queued longer than DURATION",
        doc: "SELECTOR: the messages that arrived longer than DURATION ago (`30m`, `4h`, \
              `2d`).",
        args: &["list --older-than 5d"],
    },
    Entry {
        synopsis: "`--ed25519`",
        help: "dkim-keygen: an Ed25519 key instead of RSA",
        doc: "For `dkim-keygen`: an Ed25519 key (`ed25519-sha256`, RFC 8463), short enough \
              for any DNS provider, instead of RSA. Not every receiver verifies Ed25519 \
              signatures yet: sign with RSA where that matters.",
        args: &["dkim-keygen example.org ed1 --ed25519"],
    },
    Entry {
        synopsis: "`--help`",
        help: "this help",
        doc: "Prints the commands and options.",
        args: &["--help"],
    },
];
