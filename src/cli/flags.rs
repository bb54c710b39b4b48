//! The flags' reference: one entry per flag, from which `--help`,
//! spoolmail(8) and the README's table are generated.

/// Where a flag is listed in `--help`, spoolmail(8) and the README.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Section {
    Modes,
    Submission,
    Delivery,
    Queue,
    Other,
    /// Accepted so that no caller breaks, and noted under `-v`.
    Ignored,
}

impl Section {
    pub const ALL: [Section; 6] = [
        Section::Modes,
        Section::Submission,
        Section::Delivery,
        Section::Queue,
        Section::Other,
        Section::Ignored,
    ];

    pub fn title(self) -> &'static str {
        match self {
            Section::Modes => "Modes",
            Section::Submission => "Message submission",
            Section::Delivery => "Delivery",
            Section::Queue => "Queue runs",
            Section::Other => "Other",
            Section::Ignored => "Accepted and ignored (noted under -v)",
        }
    }
}

/// One entry of the flags' reference. `--help`, spoolmail(8) and the
/// README's table are generated from `FLAGS`; a test checks that every
/// letter `parse` takes is in it and that every entry's `args` parse.
pub struct Flag {
    /// The flag as a caller writes it: literal parts in backquotes, value
    /// placeholders in capitals (`` `-f` ADDR, `-r` ADDR ``).
    pub synopsis: &'static str,
    /// One line for `--help`.
    pub help: &'static str,
    /// The reference's paragraph, `literal` text in backquotes.
    pub doc: &'static str,
    pub section: Section,
    /// Command lines that use the flag, each of which `parse` takes.
    pub args: &'static [&'static str],
}

/// Every flag `parse` understands (besides the hidden `--generate`).
pub const FLAGS: &[Flag] = &[
    Flag {
        synopsis: "`-bm`",
        help: "queue the message on stdin (the default)",
        doc: "Read a message on standard input and queue it: the default mode.",
        section: Section::Modes,
        args: &["-bm"],
    },
    Flag {
        synopsis: "`-bp`",
        help: "list the queue (as mailq)",
        doc: "List the queue, in Postfix's format: each message's queue id, size, arrival \
              time, sender, and each recipient still waiting, with the reason of its last \
              failed attempt. The same as running the program as `mailq`.",
        section: Section::Modes,
        args: &["-bp"],
    },
    Flag {
        synopsis: "`-bs`",
        help: "SMTP on stdin and stdout",
        doc: "Speak SMTP on standard input and output, as Symfony Mailer and other \
              libraries expect: each message accepted goes through the same intake as a \
              command-line submission, and is queued before it is acknowledged.",
        section: Section::Modes,
        args: &["-bs"],
    },
    Flag {
        synopsis: "`-bi`, `-I`",
        help: "check the aliases file (as newaliases)",
        doc: "Check the aliases file and report every problem as `FILE:LINE:`; exit 0 when \
              it can be used (warnings included), 78 when not. spoolmail reads the file as \
              text: there is no database to build. The same as running the program as \
              `newaliases`.",
        section: Section::Modes,
        args: &["-bi", "-I"],
    },
    Flag {
        synopsis: "`-bv` ADDRESS...",
        help: "show where each address would go; queue nothing",
        doc: "Print where each address would go, after aliases and qualification, as \
              Sendmail does, and through the `sender_relay_map` relay of the sender a \
              submission would queue (`-f`, else the user's); nothing is queued.",
        section: Section::Modes,
        args: &["-bv"],
    },
    Flag {
        synopsis: "`-bd`, `-bD`, `-bt`, `-bh`, `-bH`, `-ba`, `-bl`, `-bP`",
        help: "Sendmail's daemon and test modes: refused (exit 64)",
        doc: "Sendmail's daemon and test modes are refused with exit code 64 and the \
              reason: spoolmail runs no daemon.",
        section: Section::Modes,
        args: &["-bd", "-bD", "-bt", "-bh", "-bH", "-ba", "-bl", "-bP"],
    },
    Flag {
        synopsis: "`-t`",
        help: "recipients from To, Cc, Bcc (added to any on the command line)",
        doc: "Take recipients from the To, Cc and Bcc headers (from Resent-To, Resent-Cc \
              and Resent-Bcc when there are Resent- headers), added to any on the command \
              line, as Postfix does.",
        section: Section::Submission,
        args: &["-t"],
    },
    Flag {
        synopsis: "`-i`, `-oi`",
        help: "a line holding a single dot does not end the message",
        doc: "A line holding a single `.` does not end the message; only the end of \
              standard input does.",
        section: Section::Submission,
        args: &["-i", "-oi"],
    },
    Flag {
        synopsis: "`-f` ADDR, `-r` ADDR",
        help: "envelope sender (default: the submitting user)",
        doc: "The envelope sender; `<>` is the null sender, and a bare name is qualified. \
              Without it, the sender is the submitting user's login name (from the real \
              uid, never the environment) at `qualify_domain`. A caller other than root \
              or a member of `trusted_group` who names another sender gets an \
              X-Authentication-Warning header, as Sendmail adds.",
        section: Section::Submission,
        args: &["-f", "me@example.org", "-rme@example.org"],
    },
    Flag {
        synopsis: "`-F` NAME",
        help: "full name for an added From header",
        doc: "The full name for a From header that spoolmail adds (else the user's GECOS \
              name).",
        section: Section::Submission,
        args: &["-F", "Cron Daemon"],
    },
    Flag {
        synopsis: "`-B` `7BIT`|`8BITMIME`",
        help: "body type (8-bit content is detected anyway)",
        doc: "The body type, passed on as BODY= (8-bit content is detected anyway).",
        section: Section::Submission,
        args: &["-B8BITMIME"],
    },
    Flag {
        synopsis: "`-N` `never`|`success,failure,delay`",
        help: "DSN NOTIFY",
        doc: "DSN NOTIFY for every recipient, passed on to servers that offer DSN; \
              `never` also suppresses spoolmail's own bounce.",
        section: Section::Submission,
        args: &["-N", "success,failure"],
    },
    Flag {
        synopsis: "`-R` `full`|`hdrs`",
        help: "DSN RET: what a bounce returns",
        doc: "DSN RET, passed on to servers that offer DSN; also how much of the original \
              spoolmail's own bounce returns.",
        section: Section::Submission,
        args: &["-R", "hdrs"],
    },
    Flag {
        synopsis: "`-V` ENVID",
        help: "DSN envelope id",
        doc: "The DSN envelope id: 1 to 100 printable ASCII characters without spaces.",
        section: Section::Submission,
        args: &["-V", "envid-1"],
    },
    Flag {
        synopsis: "`--`",
        help: "end of options: what follows is recipients",
        doc: "Ends the options: every argument after it is a recipient, even one that \
              begins with `-`.",
        section: Section::Submission,
        args: &["--", "-odd-name@example.org"],
    },
    Flag {
        synopsis: "`-odb`",
        help: "deliver at once, in the background (the default)",
        doc: "Deliver right after queuing, in a detached process, while the caller goes \
              on: the default (`delivery_mode`).",
        section: Section::Delivery,
        args: &["-odb"],
    },
    Flag {
        synopsis: "`-odi`",
        help: "deliver before returning",
        doc: "Deliver before returning. With `-oep`, recipients that failed for good are \
              printed and the exit code is 67; what cannot be delivered yet stays queued.",
        section: Section::Delivery,
        args: &["-odi"],
    },
    Flag {
        synopsis: "`-odq`, `-odd`",
        help: "queue only: the next queue run delivers",
        doc: "Only queue the message; the next queue run delivers it (or the same \
              user's background runner, if one is still running when it is queued: it \
              takes every due message of its user).",
        section: Section::Delivery,
        args: &["-odq", "-odd"],
    },
    Flag {
        synopsis: "`-oem`, `-oep`, `-oeq`, `-oew`, `-em`, `-ep`, `-eq`, `-ew`",
        help: "how delivery errors are reported",
        doc: "How delivery errors are reported. Bounces are always sent; `p` (print) also \
              prints the recipients that failed under `-odi`.",
        section: Section::Delivery,
        args: &["-oem", "-oep", "-oeq", "-oew", "-em", "-ep", "-eq", "-ew"],
    },
    Flag {
        synopsis: "`-v`",
        help: "verbose: deliver now, showing the SMTP conversation",
        doc: "Verbose, as Sendmail's `-v`: the message is delivered in the foreground \
              (unless `-odq`), and the SMTP conversation is shown on standard error \
              (`>>>` what spoolmail sends, `<<<` what the server answers; passwords \
              shown as `***`), with notes on flags that were ignored. With `-q`, \
              the queue run shows its conversations.",
        section: Section::Delivery,
        args: &["-v"],
    },
    Flag {
        synopsis: "`-q`",
        help: "one queue run",
        doc: "One queue run: deliver every queued message whose next attempt is due, \
              and remove leftovers of submissions that died. This is what cron or \
              the package's systemd timer runs. Run by a user other than root, a \
              member of the spool's group or of `admin_group`, every queue run \
              (`-q`, `-qDURATION`, `-qR`, `-qS`, `-qI`) takes only that user's own \
              messages, and says so under `-v`.",
        section: Section::Queue,
        args: &["-q"],
    },
    Flag {
        synopsis: "`-q`DURATION",
        help: "a queue run every DURATION, in the foreground (-q5 is 5 minutes)",
        doc: "A queue run every DURATION, in the foreground until stopped, for machines \
              without cron, such as containers. A bare number is minutes, as in Sendmail \
              (`-q5`); else a number with `s`, `m`, `h` or `d` (`-q30s`, `-q1h`).",
        section: Section::Queue,
        args: &["-q5", "-q30s", "-q1h"],
    },
    Flag {
        synopsis: "`-qR` TEXT, `-qS` TEXT, `-qI` TEXT",
        help: "deliver now the messages whose recipient, sender, id has TEXT",
        doc: "Deliver now, whatever the retry schedule, the messages whose recipient, \
              sender or queue id contains TEXT: `sendmail -qR@` flushes the whole queue. \
              Such a run counts as an attempt of each message it tries.",
        section: Section::Queue,
        args: &["-qR@", "-qS", "alice", "-qIABC"],
    },
    Flag {
        synopsis: "`-qf`, `-qp`",
        help: "a queue run (every run is in the foreground)",
        doc: "A queue run: every run is in the foreground already.",
        section: Section::Queue,
        args: &["-qf", "-qp"],
    },
    Flag {
        synopsis: "`-C` FILE",
        help: "use another configuration file",
        doc: "Read another configuration file. A setgid spoolmail run by a user other \
              than root gives up its group first, as Sendmail does: another file could \
              name another spool.",
        section: Section::Other,
        args: &["-C", "/etc/spoolmail-other.conf"],
    },
    Flag {
        synopsis: "`-L` TAG",
        help: "syslog tag",
        doc: "The tag of the log lines (1 to 32 printable characters); `spoolmail` \
              without it.",
        section: Section::Other,
        args: &["-L", "mytag"],
    },
    Flag {
        synopsis: "`--help`",
        help: "this text",
        doc: "Print a summary of the flags.",
        section: Section::Other,
        args: &["--help"],
    },
    Flag {
        synopsis: "`--version`",
        help: "version, config file, spool and compiled-in features",
        doc: "Print the version, the configuration file, the spool directory and the \
              compiled-in features (the TLS library and its provider, the resolver).",
        section: Section::Other,
        args: &["--version"],
    },
    Flag {
        synopsis: "`-h` N",
        help: "hop counts come from Received headers",
        doc: "A hop count: spoolmail counts Received headers instead.",
        section: Section::Ignored,
        args: &["-h", "5"],
    },
    Flag {
        synopsis: "`-O` OPTION=VALUE, `-o`X",
        help: "Sendmail options",
        doc: "Sendmail options (other than those above) are not used.",
        section: Section::Ignored,
        args: &["-O", "DeliveryMode=b", "-oQ/var/spool/mqueue"],
    },
    Flag {
        synopsis: "`-X` FILE",
        help: "a traffic log: no file a caller names is written",
        doc: "Sendmail's traffic log: spoolmail never writes a file a caller names.",
        section: Section::Ignored,
        args: &["-X", "/tmp/traffic.log"],
    },
    Flag {
        synopsis: "`-p` PROTOCOL",
        help: "the protocol is always recorded as local",
        doc: "The protocol and host of received mail: it is always recorded as local.",
        section: Section::Ignored,
        args: &["-p", "esmtp:host"],
    },
    Flag {
        synopsis: "`-d`X, `-M`X",
        help: "Sendmail's debugging and macros",
        doc: "Sendmail's debugging flags and macros are not available; use `-v`.",
        section: Section::Ignored,
        args: &["-d0.1", "-MrESMTP"],
    },
    Flag {
        synopsis: "`-Ac`, `-Am`, `-G`, `-U`, `-m`, `-n`, `-s`, `-x`",
        help: "no effect in spoolmail",
        doc: "No effect in spoolmail: there is one configuration, and no local mailer.",
        section: Section::Ignored,
        args: &["-Ac", "-Am", "-G", "-U", "-m", "-n", "-s", "-x"],
    },
];
