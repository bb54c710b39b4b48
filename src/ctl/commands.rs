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
pub const COMMANDS: &[Entry] = &[Entry {
    synopsis: "`list` [`--json`] [SELECTOR]",
    help: "the queue: mailq's listing with attempts and next attempt",
    doc: "The queue, as `mailq` lists it, with each message's attempts and next attempt \
              below its first line (`*` after the id: being delivered now). With `--json`, one JSON object per message per line, with the \
              field names of Postfix's `postqueue -j`: `queue_name` \
              (`active` when being delivered or never tried yet, else `deferred`), \
              `queue_id`, `arrival_time`, `message_size`, `forced_expire` (always false), \
              `sender` (empty for `<>`), `recipients` (those still waiting, each with \
              `address`, `delay_reason` and spoolmail's `status`, `pending` or \
              `deferred`), and spoolmail's `attempts` and `next_attempt` (Unix seconds; 0 \
              for the next queue run).",
    args: &[
        "list",
        "list --json",
        "list --sender alice",
        "list --json --older-than 2d",
    ],
}];

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
        synopsis: "`--help`",
        help: "this help",
        doc: "Prints the commands and options.",
        args: &["--help"],
    },
];
