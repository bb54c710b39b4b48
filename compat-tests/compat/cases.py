"""The cases: each caller sends the way it does by default; what it queued is
checked in the spool, then delivered and checked where it lands."""

import email.header
import email.message
import email.policy
import fcntl
import glob
import os
import re
import shutil
import smtplib
import socket
import subprocess
import time

from .common import (
    ALIASES,
    DEADLINE,
    DOMAIN,
    Fail,
    IS_ROOT,
    LOCAL_SENDER,
    MAILQ,
    ME,
    NAGIOS_DIR,
    OTHER,
    PREFIX,
    SENDMAIL,
    SPOOL,
    Skip,
    WORK,
    run,
    short,
)
from .spool import CURRENT, clean_spool, expect_messages, queued
from .servers import SERVERS, use_config
from .checks import Checks, deliver_and_check, expect_spool_empty, need_receiver, tls_problems


CASES = []


def case(name):
    def register(fn):
        CASES.append((name, fn))
        return fn
    return register


def case_dir(name):
    d = os.path.join(WORK, "cases", name)
    shutil.rmtree(d, ignore_errors=True)
    os.makedirs(os.path.join(d, "home"))
    return d


def caller_env(home, **extra):
    """A clean environment: the caller's own config comes only from what the case writes."""
    keep = {k: v for k, v in os.environ.items() if k in ("PATH", "TZ")}
    keep.setdefault("PATH", "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin")
    keep.update(HOME=home, USER=ME, LOGNAME=ME, LANG="C.UTF-8", LC_ALL="C.UTF-8", TERM="dumb",
                TMPDIR=home, GIT_CONFIG_NOSYSTEM="1")
    keep.update(extra)
    return keep


def need(env, tool):
    if tool not in env.path:
        raise Skip(env.missing.get(tool, f"{tool} is not available"))
    return env.path[tool]


# 1. PHP mail()
@case("php-mail")
def php_mail(env, d):
    php = need(env, "php")
    # PHP writes the message and then a line ending of its own.
    body = "Hello from PHP mail().\nA lone dot follows, kept because of -i:\n.\n..two dots\nLast line."
    code = (
        '$body = ' + php_string(body) + ';\n'
        '$headers = "From: PHP Sender <from@example.test>\\r\\nCc: cc@other.test\\r\\n'
        'Bcc: hidden@example.test\\r\\nX-Test: php";\n'
        'exit(mail("to@example.test", "PHP subject", $body, $headers, "-fsender@example.test") ? 0 : 1);\n'
    )
    run([php, "-d", f"sendmail_path={SENDMAIL} -t -i", "-r", code],
        env=caller_env(os.path.join(d, "home")), what="php mail()")
    (m,) = expect_messages(1)
    c = Checks(m)
    c.envelope("sender@example.test", ["to@example.test", "cc@other.test", "hidden@example.test"])
    c.standard()
    c.header("From", "PHP Sender <from@example.test>")
    c.header("To", "to@example.test")
    c.header("Cc", "cc@other.test")
    c.header("Subject", "PHP subject")
    c.header("X-Test", "php")
    c.body(body.encode() + b"\n")
    c.done()


def php_string(s):
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"').replace("$", "\\$").replace("\n", "\\n") + '"'


MAILX_BODY = "Hello from mailx.\nA lone dot follows:\n.\nLast line.\n"


def check_mailx_message(subject):
    (m,) = expect_messages(1)
    c = Checks(m)
    c.envelope(LOCAL_SENDER, ["to@example.test", "cc@other.test"])
    c.standard()
    c.header("Subject", subject)
    c.eq("To addresses", m.addresses("To"), ["to@example.test"])
    c.eq("Cc addresses", m.addresses("Cc"), ["cc@other.test"])
    c.body(MAILX_BODY.encode())
    c.done()


# 2. s-nail, and Debian's default mailx (bsd-mailx)
@case("s-nail")
def s_nail(env, d):
    snail = need(env, "s-nail")
    home = os.path.join(d, "home")
    # -:/ loads no resource files (neither /etc/s-nail.rc nor ~/.mailrc); mta is
    # what s-nail calls the sendmail program (the old name `sendmail` is obsolete).
    run([snail, "-:/", "-S", f"mta={SENDMAIL}", "-s", "s-nail subject", "-c", "cc@other.test", "to@example.test"],
        input=MAILX_BODY, env=caller_env(home, MAILRC="/dev/null"), what="s-nail")
    check_mailx_message("s-nail subject")


@case("bsd-mailx")
def bsd_mailx(env, d):
    # Debian's default mailx runs `/usr/sbin/sendmail -i -t`, with that path
    # compiled in (it has no `sendmail` variable). In a private mount namespace
    # (unshare -m, propagation private) a directory holding only our sendmail
    # is bind-mounted over /usr/sbin for bsd-mailx alone; the machine's
    # /usr/sbin is not touched.
    root = os.path.join(WORK, "bsd-mailx")
    binary = os.path.join(root, "usr", "bin", "bsd-mailx")
    if not os.path.exists(binary):
        raise Skip(env.missing.get("bsd-mailx", "bsd-mailx is not available"))
    if not IS_ROOT:
        raise Skip("bsd-mailx runs /usr/sbin/sendmail, compiled in; replacing it in a private "
                   "mount namespace needs root")
    libdirs = sorted({os.path.dirname(p) for p in glob.glob(os.path.join(root, "**", "liblockfile.so*"),
                                                              recursive=True)})
    rc = os.path.join(d, "mailrc")
    open(rc, "w").close()
    home = os.path.join(d, "home")
    p = run_with_our_usr_sbin(d, [binary, "-s", "bsd-mailx subject", "-c", "cc@other.test", "to@example.test"],
                              input=MAILX_BODY, env=caller_env(home, MAILRC=rc, LD_LIBRARY_PATH=":".join(libdirs)),
                              what="bsd-mailx")
    if p.returncode != 0 and re.search(rb"^(unshare|mount):", p.stderr, re.M) and not queued():
        raise Skip("bsd-mailx runs /usr/sbin/sendmail, compiled in; a private mount namespace "
                   f"to replace it cannot be made here: {p.stderr.decode(errors='replace').strip()[-200:]}")
    if p.returncode != 0:
        raise Fail(f"bsd-mailx exited {p.returncode}: {short(p.stderr.decode(errors='replace').strip(), 300)}")
    check_mailx_message("bsd-mailx subject")


def run_with_our_usr_sbin(d, argv, **kw):
    """Runs argv in a private mount namespace (unshare -m, propagation
    private) where a directory holding only our sendmail is bind-mounted over
    /usr/sbin, for callers with /usr/sbin/sendmail compiled in or as their
    default; the machine's /usr/sbin is not touched."""
    fake = os.path.join(d, "usr-sbin")
    os.makedirs(fake, exist_ok=True)
    os.symlink(SENDMAIL, os.path.join(fake, "sendmail"))
    script = 'mount --bind "$1" /usr/sbin && shift && exec "$@"'
    return run(["unshare", "-m", "--propagation", "private", "sh", "-c", script, "sh", fake, *argv],
               check=False, **kw)


# 3. mutt
MUTT_BODY = "Hello from mutt.\nA lone dot follows:\n.\nLast line.\n"


@case("mutt")
def mutt_case(env, d):
    # mutt runs `$sendmail -- to cc bcc` and never writes the Bcc header itself
    # (not even with write_bcc set, in mutt 2.2).
    mutt = need(env, "mutt")
    home = os.path.join(d, "home")
    rc = os.path.join(d, "muttrc")
    with open(rc, "w") as f:
        f.write(f'set sendmail="{SENDMAIL} -oem -oi"\nset copy=no\nset record=""\n')
    run([mutt, "-n", "-F", rc, "-s", "mutt subject", "-c", "cc@other.test", "-b", "bcc@example.test",
         "to@example.test"], input=MUTT_BODY, env=caller_env(home), what="mutt")
    (m,) = expect_messages(1)
    c = Checks(m)
    c.envelope(LOCAL_SENDER, ["to@example.test", "cc@other.test", "bcc@example.test"])
    c.standard()
    c.header("Subject", "mutt subject")
    c.eq("To addresses", m.addresses("To"), ["to@example.test"])
    c.eq("Cc addresses", m.addresses("Cc"), ["cc@other.test"])
    c.body(MUTT_BODY.encode())
    c.done()


# 4. git send-email
def git_send_email_case(env, d, mode):
    git = need(env, "git-send-email")
    home = os.path.join(d, "home")
    genv = caller_env(home, GIT_AUTHOR_DATE="2026-01-02T03:04:05Z", GIT_COMMITTER_DATE="2026-01-02T03:04:05Z")
    repo = os.path.join(d, "repo")
    os.makedirs(repo)

    def g(*args):
        return run([git, *args], cwd=repo, env=genv, what=f"git {args[0]}")

    g("init", "-q")
    g("config", "user.name", "A U Thor")
    g("config", "user.email", "author@example.test")
    with open(os.path.join(repo, "hello.txt"), "w") as f:
        f.write("Hello\n\tindented with a tab\ntrailing spaces   \n")
    g("add", "hello.txt")
    g("commit", "-q", "-m", "Add hello\n\nSigned-off-by: A U Thor <author@example.test>")
    with open(os.path.join(repo, "hello.txt"), "a") as f:
        f.write(".\n..\nFrom the start of a line\nGrüße, naïve café\n")
    g("commit", "-q", "-a", "-m",
      "Extend hello\n\nA lone dot, two dots, a From line and UTF-8.\n\n"
      "Signed-off-by: A U Thor <author@example.test>\nSigned-off-by: Rev Iewer <reviewer@other.test>")
    g("format-patch", "-q", "-2", "-o", os.path.join(d, "patches"))
    patches = sorted(os.path.join(d, "patches", p) for p in os.listdir(os.path.join(d, "patches")))
    if mode == "sendmail-cmd":
        how = [f"--sendmail-cmd={SENDMAIL}"]
    else:
        how = [f"--smtp-server={SENDMAIL}"]
    g("send-email", *how, "--to=list@example.test", "--from=A U Thor <author@example.test>",
      "--confirm=never", "--no-validate", "--quiet", *patches)
    msgs = expect_messages(2)
    problems = []
    for i, (m, patch) in enumerate(zip(msgs, patches)):
        c = Checks(m)
        raw = open(patch, "rb").read()
        want_body = raw.partition(b"\n\n")[2]
        # Without --envelope-sender git passes no -f: the sender is the submitting user.
        c.eq("envelope sender", m.sender, LOCAL_SENDER)
        announced = sorted(set(m.addresses("To", "Cc")))
        c.eq("envelope recipients vs To+Cc", sorted(m.rcpts), announced)
        c.true(f"list@example.test not among recipients {m.rcpts}", "list@example.test" in m.rcpts)
        if i == 1:
            c.true(f"Signed-off-by reviewer@other.test not cc'd: {m.rcpts}", "reviewer@other.test" in m.rcpts)
            c.eq("In-Reply-To of patch 2", m.header("In-Reply-To"), msgs[0].header("Message-ID"))
        c.standard()
        c.eq("Subject", m.header("Subject"), f"[PATCH {i + 1}/2] " + ("Add hello" if i == 0 else "Extend hello"))
        c.body(want_body, what=f"patch {i + 1} body vs {os.path.basename(patch)}")
        problems += c.problems
    if problems:
        raise Fail("; ".join(problems))


@case("git-send-email-sendmail-cmd")
def git_send_email_cmd(env, d):
    git_send_email_case(env, d, "sendmail-cmd")


@case("git-send-email-smtp-server")
def git_send_email_server(env, d):
    git_send_email_case(env, d, "smtp-server")


# 5. cron, by its exact argv
CRON_BODY = "backup: 3 files copied\nGrüße from cron\n.\nlast line of output\n"


@case("cron-debian")
def cron_debian(env, d):
    # Debian's cron 3.0pl1: MAILCMD "%s -FCronDaemon -i -B8BITMIME -oem %s",
    # and the header it writes (do_command.c).
    header = ("From: root (Cron Daemon)\nTo: root\nSubject: Cron <root@host> /usr/local/bin/backup\n"
              "MIME-Version: 1.0\nContent-Type: text/plain; charset=UTF-8\nContent-Transfer-Encoding: 8bit\n"
              "X-Cron-Env: <SHELL=/bin/sh>\nX-Cron-Env: <HOME=/root>\nX-Cron-Env: <LOGNAME=root>\n\n")
    run([SENDMAIL, "-FCronDaemon", "-i", "-B8BITMIME", "-oem", "root"], input=header + CRON_BODY,
        env=caller_env(os.path.join(d, "home")), what="sendmail (cron argv)")
    (m,) = expect_messages(1)
    c = Checks(m)
    c.envelope(LOCAL_SENDER, ["root@" + DOMAIN])
    c.eq("orcpt of root", m.orcpts.get(0), "root")
    c.eq("body type", m.env.get("body"), "8bitmime")
    c.standard()
    # Bare names in address headers are qualified (as Postfix's cleanup does).
    c.header("From", f"root@{DOMAIN} (Cron Daemon)")
    c.header("To", f"root@{DOMAIN}")
    c.header("Subject", "Cron <root@host> /usr/local/bin/backup")
    c.eq("X-Cron-Env headers", len(m.headers("X-Cron-Env")), 3)
    c.body(CRON_BODY.encode())
    c.done()


@case("cron-cronie")
def cron_cronie(env, d):
    # cronie: MAILARGS "%s -FCronDaemon -i -odi -oem -oi -t -f %s", header from
    # do_command.c. -odi: spoolmail delivers before returning, so the message
    # is checked where it lands (with no receiver, it stays queued: checked there).
    header = ('From: "(Cron Daemon)" <root>\nTo: root\nSubject: Cron <root@host> /usr/local/bin/backup\n'
              "MIME-Version: 1.0\nContent-Type: text/plain; charset=UTF-8\nAuto-Submitted: auto-generated\n"
              "Precedence: bulk\nX-Cron-Env: <SHELL=/bin/sh>\n\n")
    run([SENDMAIL, "-FCronDaemon", "-i", "-odi", "-oem", "-oi", "-t", "-f", "root"], input=header + CRON_BODY,
        env=caller_env(os.path.join(d, "home")), what="sendmail (cronie argv)")

    def expectations(c):
        c.standard()
        c.header("From", f'"(Cron Daemon)" <root@{DOMAIN}>')
        c.header("To", f"root@{DOMAIN}")
        c.header("Subject", "Cron <root@host> /usr/local/bin/backup")
        c.header("Auto-Submitted", "auto-generated")
        c.body(CRON_BODY.encode())

    if not (SERVERS and SERVERS.ready):
        (m,) = expect_messages(1)
        c = Checks(m)
        c.envelope("root@" + DOMAIN, ["root@" + DOMAIN])
        c.eq("body type", m.env.get("body"), "8bitmime")
        expectations(c)
        c.done()
        need_receiver()
    expect_spool_empty("sendmail -odi returned")
    CURRENT.delivered = True
    copies = SERVERS.postfix.wait(1)
    problems = []
    for copy in copies:
        c = Checks(copy, record=False)
        c.eq("Return-Path", copy.return_path, f"<root@{DOMAIN}>")
        c.eq("Delivered-To", copy.rcpt, f"root@{DOMAIN}")
        expectations(c)
        problems += [f"{copy.id}: {p}" for p in c.problems]
    if len(copies) != 1:
        problems.append(f"{len(copies)} copies landed, expected 1")
    problems += tls_problems(copies)
    if problems:
        raise Fail("at Postfix: " + "; ".join(problems))


# 5b. cron mailing root, which no MX takes: the fallback address, or an alias
CRON_DEBIAN_HEADER = ("From: root (Cron Daemon)\nTo: root\nSubject: Cron <root@host> /usr/local/bin/backup\n"
                      "MIME-Version: 1.0\nContent-Type: text/plain; charset=UTF-8\n"
                      "Content-Transfer-Encoding: 8bit\nX-Cron-Env: <SHELL=/bin/sh>\n\n")


def cron_debian_local(d, target):
    """Debian cron's exact argv mailing `root`, under the config use_config()
    set: the envelope must go to `target`, with `root` kept as its original
    recipient (orcpt), shown by mailq as `target (root)` and by -bv; Postfix
    must deliver it for `target` (Delivered-To and X-Original-To). The
    headers stay as written, bare names qualified (To: root@example.test)."""
    bv = run([SENDMAIL, "-bv", "root"], what="sendmail -bv root").stdout.decode(errors="replace")
    run([SENDMAIL, "-FCronDaemon", "-i", "-B8BITMIME", "-oem", "root"], input=CRON_DEBIAN_HEADER + CRON_BODY,
        env=caller_env(os.path.join(d, "home")), what="sendmail (cron argv)")
    (m,) = expect_messages(1)
    c = Checks(m)
    c.envelope(LOCAL_SENDER, [target])
    c.eq("orcpt of the recipient", m.orcpts.get(0), "root")
    c.eq("body type", m.env.get("body"), "8bitmime")
    c.true(f"sendmail -bv root printed {short(bv, 200)}, expected a line starting "
           f"'{target}... deliverable: '", any(line.startswith(f"{target}... deliverable: ") for line in bv.splitlines()))
    q = run([MAILQ], what="mailq").stdout.decode(errors="replace")
    c.true(f"mailq does not show '{target} (root)' for {m.id}: {short(q, 300)}",
           re.search(r"^\s+%s \(root\)\s*$" % re.escape(target), q, re.M) is not None)
    c.standard()
    c.header("From", f"root@{DOMAIN} (Cron Daemon)")
    c.header("To", f"root@{DOMAIN}")
    c.header("Subject", "Cron <root@host> /usr/local/bin/backup")
    c.body(CRON_BODY.encode())
    c.done()
    if SERVERS and SERVERS.ready:
        copies = deliver_and_check()
        problems = [f"{copy.id}: Delivered-To {copy.rcpt!r}, X-Original-To {copy.original_to!r}, expected {target!r}"
                    for copy in copies if (copy.rcpt, copy.original_to) != (target, target)]
        if problems:
            raise Fail("at Postfix: " + "; ".join(problems))


@case("cron-debian-fallback")
def cron_debian_fallback(env, d):
    # No alias for root: local_recipient_fallback takes it (nullmailer's adminaddr).
    use_config("local_recipient_fallback = admin@example.test")
    cron_debian_local(d, "admin@example.test")


@case("cron-debian-aliases")
def cron_debian_aliases(env, d):
    # An aliases file with root in it: the alias wins over the fallback.
    with open(ALIASES, "w") as f:
        f.write("# compat-tests: cron's mail to root goes to ops\nroot: ops@example.test\n")
    use_config("local_recipient_fallback = admin@example.test", f"aliases_file = {ALIASES}")
    cron_debian_local(d, "ops@example.test")


# 6. Shell forms
def sh(d, script, *, input=None):
    return run(["sh", "-c", script, "sh", SENDMAIL], input=input, env=caller_env(os.path.join(d, "home")),
               what="sh -c " + short(script, 60))


def simple_checks(sender, rcpts, body, headers=()):
    (m,) = expect_messages(1)
    c = Checks(m)
    c.envelope(sender, rcpts)
    c.standard()
    for name, value in headers:
        c.header(name, value)
    c.body(body)
    return m, c


@case("shell-argv-file")
def shell_argv_file(env, d):
    path = os.path.join(d, "message.txt")
    body = b"line one\n\n  line three, indented\nFrom here on, a From line\n"
    with open(path, "wb") as f:
        f.write(b"From: Alice <alice@example.test>\nTo: Bob <bob@example.test>\nSubject: from a file\n\n" + body)
    sh(d, f'"$1" bob@example.test < "{path}"')
    _, c = simple_checks(LOCAL_SENDER, ["bob@example.test"], body,
                         [("From", "Alice <alice@example.test>"), ("Subject", "from a file")])
    c.done()


@case("shell-printf-t")
def shell_printf_t(env, d):
    sh(d, "printf 'To: a@example.test\\nSubject: s\\n\\nbody\\n' | \"$1\" -t")
    m, c = simple_checks(LOCAL_SENDER, ["a@example.test"], b"body\n", [("To", "a@example.test"), ("Subject", "s")])
    c.done()


@case("shell-heredoc")
def shell_heredoc(env, d):
    sh(d, '"$1" -t <<EOF\nTo: to@example.test\nCc: Carol <cc@other.test>\nBcc: secret@example.test\n'
          'Subject: here-document\n\nDear $USER,\nthis came from a here-document.\nEOF\n')
    m, c = simple_checks(LOCAL_SENDER, ["to@example.test", "cc@other.test", "secret@example.test"],
                         f"Dear {ME},\nthis came from a here-document.\n".encode(),
                         [("Subject", "here-document"), ("Cc", "Carol <cc@other.test>")])
    c.done()


@case("shell-f-F-no-from")
def shell_f_full_name(env, d):
    sh(d, '"$1" -f alice@example.test -F "Alice Example" bob@example.test', input="Subject: no From here\n\nhi\n")
    m, c = simple_checks("alice@example.test", ["bob@example.test"], b"hi\n")
    c.header("From", "Alice Example <alice@example.test>")
    c.done()


DOT_INPUT = "Subject: dot\n\nbefore\n.\nafter the dot\n"


@case("shell-lone-dot-without-i")
def shell_dot_without_i(env, d):
    sh(d, '"$1" bob@example.test', input=DOT_INPUT)
    _, c = simple_checks(LOCAL_SENDER, ["bob@example.test"], b"before\n")
    c.done()


@case("shell-lone-dot-with-i")
def shell_dot_with_i(env, d):
    sh(d, '"$1" -i bob@example.test', input=DOT_INPUT)
    _, c = simple_checks(LOCAL_SENDER, ["bob@example.test"], b"before\n.\nafter the dot\n")
    c.done()


@case("shell-crlf")
def shell_crlf(env, d):
    msg = b"To: to@example.test\r\nSubject: CRLF\r\n\tfolded\r\n\r\nline 1\r\n\r\nline 3\r\n"
    sh(d, '"$1" -t', input=msg)
    m, c = simple_checks(LOCAL_SENDER, ["to@example.test"], b"line 1\n\nline 3\n", [("Subject", "CRLF\tfolded")])
    c.true(f"folded Subject not stored as LF + tab: {short(m.header_bytes)}", b"Subject: CRLF\n\tfolded\n" in m.header_bytes)
    c.done()


# 7. Python's subprocess with an EmailMessage
@case("python-subprocess")
def python_subprocess(env, d):
    msg = email.message.EmailMessage()
    msg["From"] = "Py Thon <py@example.test>"
    msg["To"] = "Jörg Empfänger <to@example.test>"
    msg["Subject"] = "Grüße aus Köln ✓"
    msg.set_content("Grüße aus Köln.\nÜmlaute: äöü ß\n.\nEnde.\n")
    data = msg.as_bytes()
    try:
        subprocess.run([SENDMAIL, "-t", "-i"], input=data, check=True, timeout=30, capture_output=True,
                       env=caller_env(os.path.join(d, "home")))
    except subprocess.CalledProcessError as e:
        raise Fail(f"sendmail exited {e.returncode}: {e.stderr.decode(errors='replace').strip()}")
    except subprocess.TimeoutExpired:
        raise Fail("sendmail did not finish within 60s")
    want_body = data.partition(b"\n\n")[2]
    m, c = simple_checks(LOCAL_SENDER, ["to@example.test"], want_body)
    c.eq("body type", m.env.get("body"), "8bitmime")
    c.eq("Content-Transfer-Encoding", m.header("Content-Transfer-Encoding"), "8bit")
    subject = m.header("Subject")
    decoded = str(email.header.make_header(email.header.decode_header(subject))) if subject else None
    c.eq("decoded Subject", decoded, "Grüße aus Köln ✓")
    c.true("smtputf8 set for ASCII addresses", "smtputf8" not in m.env)
    c.done()


NODE_SCRIPT = r"""
const nodemailer = require(process.argv[2]);
const transport = nodemailer.createTransport({ sendmail: true, path: process.argv[3] });
transport.sendMail({
    from: "Node Mailer <node@example.test>", to: "to@example.test", cc: "cc@other.test",
    bcc: "hidden@example.test", subject: "nodemailer subject", text: process.argv[4],
}).then(() => process.exit(0), (e) => { console.error(String(e)); process.exit(1); });
"""


@case("nodemailer")
def nodemailer_case(env, d):
    # Nodemailer's sendmail transport: `sendmail -i -f from to...` (no `--`),
    # CRLF header with the Bcc header left in (keepBcc), the text as given.
    module = need(env, "nodemailer")
    script = os.path.join(d, "send.js")
    with open(script, "w") as f:
        f.write(NODE_SCRIPT)
    body = "Hello from Nodemailer.\nA lone dot follows:\n.\nLast line.\n"
    run(["node", script, module, SENDMAIL, body], env=caller_env(os.path.join(d, "home")), what="node (nodemailer)")
    m, c = simple_checks("node@example.test", ["to@example.test", "cc@other.test", "hidden@example.test"],
                         body.encode(), [("From", "Node Mailer <node@example.test>"), ("Subject", "nodemailer subject")])
    c.done()


# 7b. Python's smtplib over `sendmail -bs`: two messages in one session
BS_BODY_1 = b"First message over -bs.\r\n.\r\n..two dots\r\n.leading dot\r\nFrom the start of a line\r\nlast line\r\n"


@case("python-smtplib-bs")
def python_smtplib_bs(env, d):
    # smtplib talks to `sendmail -bs` over a socketpair: the child's stdin and
    # stdout are one end, smtplib's socket the other (greeting read with
    # getreply(), as connect() would). Message 1 goes with sendmail() (raw
    # CRLF bytes with a Bcc header, dot-stuffed by smtplib), message 2 with
    # send_message() (an EmailMessage: 8-bit UTF-8 text, Bcc taken out by
    # smtplib and added to the recipients).
    ours, theirs = socket.socketpair()
    limit = int(min(60, DEADLINE - time.time()))
    try:
        proc = subprocess.Popen(["timeout", "-k", "5", str(limit), SENDMAIL, "-bs"], stdin=theirs, stdout=theirs,
                                stderr=subprocess.PIPE, env=caller_env(os.path.join(d, "home")))
    finally:
        theirs.close()
    raw1 = (b"From: BS One <bs-one@example.test>\r\nTo: to@example.test\r\nBcc: secret@other.test\r\n"
            b"Subject: smtplib over -bs, one\r\n\r\n" + BS_BODY_1)
    msg2 = email.message.EmailMessage()
    msg2["From"] = "BS Two <bs-two@example.test>"
    msg2["To"] = "to2@example.test"
    msg2["Cc"] = "cc2@other.test"
    msg2["Bcc"] = "hidden2@example.test"
    msg2["Subject"] = "smtplib over -bs, zwei: Grüße"
    msg2.set_content("Zweite Nachricht über -bs.\nÄÖÜ äöü ß ✓\n.\nEnde.\n")
    transcript = []
    try:
        ours.settimeout(30)
        smtp = smtplib.SMTP(local_hostname="client.example.test", timeout=30)
        smtp.sock = ours
        code, greeting = smtp.getreply()
        transcript.append(f"{code} {greeting.decode(errors='replace')}")
        if code != 220:
            raise Fail(f"greeting of sendmail -bs: {code} {greeting!r}")
        code, _ = smtp.ehlo()
        if code != 250 or not smtp.has_extn("8bitmime"):
            raise Fail(f"EHLO: {code}, extensions {sorted(smtp.esmtp_features)}")
        refused = smtp.sendmail("bs-one@example.test", ["to@example.test", "secret@other.test"], raw1)
        refused2 = smtp.send_message(msg2, mail_options=["BODY=8BITMIME"])
        if refused or refused2:
            raise Fail(f"recipients refused: {refused} {refused2}")
        smtp.quit()
    except (smtplib.SMTPException, OSError) as e:
        raise Fail(f"smtplib over sendmail -bs: {type(e).__name__}: {e}")
    finally:
        ours.close()
        try:
            proc.wait(limit + 10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    err = proc.stderr.read().decode(errors="replace").strip()
    if proc.returncode != 0:
        raise Fail(f"sendmail -bs exited {proc.returncode} after QUIT: {short(err, 300)}")
    m1, m2 = expect_messages(2)
    problems = []
    c = Checks(m1)
    c.envelope("bs-one@example.test", ["to@example.test", "secret@other.test"])
    c.standard()
    c.header("From", "BS One <bs-one@example.test>")
    c.header("Subject", "smtplib over -bs, one")
    c.body(BS_BODY_1.replace(b"\r\n", b"\n"))
    c.true("X-Authentication-Warning added for root's MAIL FROM", not m1.headers("X-Authentication-Warning"))
    problems += [f"message 1: {p}" for p in c.problems]
    c = Checks(m2)
    c.envelope("bs-two@example.test", ["to2@example.test", "cc2@other.test", "hidden2@example.test"])
    c.standard()
    c.header("From", "BS Two <bs-two@example.test>")
    c.header("Cc", "cc2@other.test")
    c.eq("body type", m2.env.get("body"), "8bitmime")
    c.body(msg2.as_bytes().partition(b"\n\n")[2])
    problems += [f"message 2: {p}" for p in c.problems]
    if problems:
        raise Fail("; ".join(problems))


# 7c. Symfony Mailer's default transport: `/usr/sbin/sendmail -bs`
SYMFONY_SCRIPT = r"""<?php
require_once $argv[1] . '/Symfony/Component/Mailer/autoload.php';
require_once $argv[1] . '/Symfony/Component/Mime/autoload.php';

use Symfony\Component\Mailer\Mailer;
use Symfony\Component\Mailer\Transport;
use Symfony\Component\Mime\Address;
use Symfony\Component\Mime\Email;

// sendmail://default is SendmailTransport with its default command,
// '/usr/sbin/sendmail -bs': an SMTP session with sendmail over a pipe.
$mailer = new Mailer(Transport::fromDsn('sendmail://default'));
$mailer->send((new Email())
    ->from(new Address('app@example.test', 'The App'))
    ->to('alice@example.test')
    ->cc('carol@other.test')
    ->bcc('hidden@example.test')
    ->subject('Symfony Mailer über -bs')
    ->text($argv[2]));
$mailer->send((new Email())
    ->from('app@example.test')
    ->to(new Address('bob@other.test', 'Bób Ünïcode'))
    ->subject('symfony two')
    ->text("Second message.\n")
    ->attach("attached text\n.\nwith a lone dot line\n", 'note.txt', 'text/plain'));
echo "SENT\n";
"""
SYMFONY_TEXT = "Hello from Symfony Mailer.\n.\n..two dots\nFrom the start of a line\nGrüße ✓\nlast line\n"


@case("symfony-mailer-bs")
def symfony_mailer(env, d):
    # Symfony Mailer from Debian's php-symfony-mailer, its transport from the
    # DSN sendmail://default: `/usr/sbin/sendmail -bs`, run as its default
    # command in a mount namespace where /usr/sbin holds our sendmail (as for
    # bsd-mailx). It sends the text quoted-printable, so the text is compared
    # decoded; the envelope and the rest are checked as for every case.
    php = need(env, "php")
    autoload = need(env, "symfony-mailer")
    if not IS_ROOT:
        raise Skip("Symfony Mailer's default transport runs /usr/sbin/sendmail; replacing it in a private "
                   "mount namespace needs root")
    script = os.path.join(d, "send.php")
    with open(script, "w") as f:
        f.write(SYMFONY_SCRIPT)
    p = run_with_our_usr_sbin(d, [php, script, autoload, SYMFONY_TEXT], env=caller_env(os.path.join(d, "home")),
                              what="php (Symfony Mailer)")
    if p.returncode != 0 or p.stdout.strip() != b"SENT":
        raise Fail(f"php (Symfony Mailer) exited {p.returncode}: "
                   + short((p.stdout + p.stderr).decode(errors="replace").strip(), 400))
    m1, m2 = expect_messages(2)
    problems = []
    c = Checks(m1)
    c.envelope("app@example.test", ["alice@example.test", "carol@other.test", "hidden@example.test"])
    c.standard()
    c.header("From", "The App <app@example.test>")
    c.header("To", "alice@example.test")
    c.header("Cc", "carol@other.test")
    parsed = email.message_from_bytes(m1.content, policy=email.policy.default)
    c.eq("decoded Subject", str(parsed["Subject"]), "Symfony Mailer über -bs")
    text = parsed.get_content() if not parsed.is_multipart() else None
    # Symfony's SmtpTransport ends DATA with "\r\n.\r\n" whatever the message
    # ends with, so a text ending in a line end arrives with one empty line more.
    c.eq("decoded text", text.replace("\r\n", "\n") if text else text, SYMFONY_TEXT + "\n")
    problems += [f"message 1: {p}" for p in c.problems]
    c = Checks(m2)
    c.envelope("app@example.test", ["bob@other.test"])
    c.standard()
    parsed = email.message_from_bytes(m2.content, policy=email.policy.default)
    parts = {part.get_filename(): part.get_content() for part in parsed.iter_attachments()}
    c.eq("attachment note.txt", parts.get("note.txt", "").replace("\r\n", "\n"),
         "attached text\n.\nwith a lone dot line\n")
    problems += [f"message 2: {p}" for p in c.problems]
    if problems:
        raise Fail("; ".join(problems))


# 8. check_mailq (monitoring-plugins-standard)
def check_mailq_setup(env, d):
    src = need(env, "check_mailq")
    # check_mailq runs $utils::PATH_TO_MAILQ (/usr/bin/mailq, set in utils.pm)
    # and finds utils.pm beside itself (use lib "$FindBin::Bin"); it resets
    # PATH, so PATH cannot redirect it. A copy of both, with the path edited
    # in the copy of utils.pm, runs our mailq; the script itself is unchanged.
    plugdir = os.path.join(d, "plugins")
    os.makedirs(plugdir)
    shutil.copy(src, plugdir)
    utils = open(os.path.join(NAGIOS_DIR, "utils.pm")).read()
    edited, n = re.subn(r'^\$PATH_TO_MAILQ\s*=\s*"[^"]*"', f'$PATH_TO_MAILQ   = "{MAILQ}"', utils, flags=re.M)
    if n != 1:
        raise Fail(f"{NAGIOS_DIR}/utils.pm: no single $PATH_TO_MAILQ line to point at {MAILQ}")
    with open(os.path.join(plugdir, "utils.pm"), "w") as f:
        f.write(edited)
    for i in range(3):
        run([SENDMAIL, "-f", f"sender{i}@example.test", f"rcpt{i}@{OTHER}"],
            input=f"Subject: queued {i}\n\nmessage {i}\n", what="sendmail")
    for i, m in enumerate(expect_messages(3)):
        c = Checks(m)
        c.envelope(f"sender{i}@example.test", [f"rcpt{i}@{OTHER}"])
        c.standard()
        c.body(f"message {i}\n".encode())
        c.done()
    # What is under test is check_mailq reading mailq: with no receiver, the
    # queue is emptied by hand instead of by a queue run.
    CURRENT.delivery_optional = True
    return os.path.join(plugdir, "check_mailq")


def marked_queue():
    """Puts the first of the 3 queued messages on hold (`!` after its id in
    mailq) and takes the claim lock of the second, as a delivery holds it
    (`*`): check_mailq must count them as before. Returns what undoes both."""
    ids = [m.id for m in expect_messages(3)]
    run([os.path.join(PREFIX, "sbin", "spoolctl"), "hold", ids[0]], what="spoolctl hold")
    claim = open(os.path.join(SPOOL, "queue", ids[1]), "rb")
    fcntl.flock(claim, fcntl.LOCK_EX)
    listing = run([MAILQ], what="mailq").stdout.decode(errors="replace")
    if f"{ids[0]}!" not in listing or f"{ids[1]}*" not in listing:
        claim.close()
        raise Fail(f"mailq does not mark {ids[0]} held and {ids[1]} in delivery: {short(listing, 400)}")

    def undo():
        claim.close()
        run([os.path.join(PREFIX, "sbin", "spoolctl"), "release", ids[0]], what="spoolctl release")
    return undo


def check_mailq_run(script, d, mode):
    p = run(["perl", script, "-M", mode, "-w", "2", "-c", "5", "-t", "20"], check=False,
            env=caller_env(os.path.join(d, "home")), what="check_mailq")
    return p.returncode, p.stdout.decode(errors="replace").strip()


@case("setgid-unprivileged-user")
def setgid_unprivileged_user(env, d):
    """The multi-user promise of install.sh's setgid set-up: any user can
    submit and list the queue, nobody else's mail can be read, and -C gives
    the group privilege up."""
    if os.geteuid() != 0:
        raise Skip("needs root, to install setgid and to run as another user")
    binary = os.path.join(PREFIX, "sbin", "spoolmail")
    if not os.stat(binary).st_mode & 0o2000:
        raise Skip("spoolmail is not installed setgid (install.sh ran without root)")
    os.chmod(d, 0o755)
    as_nobody = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]
    p = run(as_nobody + [SENDMAIL, "-f", "nobody@example.test", "bob@example.test"],
            input="Subject: from nobody\n\nhello\n", check=False, what="sendmail as uid 65534")
    if p.returncode != 0:
        raise Fail(f"uid 65534 could not submit: exit {p.returncode}: {p.stderr.decode(errors='replace').strip()}")
    p = run(as_nobody + ["ls", os.path.join(SPOOL, "queue")], check=False, what="ls as uid 65534")
    if p.returncode == 0:
        raise Fail("uid 65534 can list the queue directory itself")
    p = run(as_nobody + [MAILQ], check=False, what="mailq as uid 65534")
    if p.returncode != 0 or b"bob@example.test" not in p.stdout:
        raise Fail(f"mailq as uid 65534: exit {p.returncode}, {short(p.stdout.decode(errors='replace'), 200)}")
    evil = os.path.join(d, "other.conf")
    with open(evil, "w") as f:
        f.write(f"spool_dir = {SPOOL}\nlog = stderr\n")
    os.chmod(evil, 0o644)
    p = run(as_nobody + [SENDMAIL, "-C", evil, "bob@example.test"], input="Subject: via -C\n\nx\n",
            check=False, what="sendmail -C as uid 65534")
    if p.returncode not in (73, 77):
        raise Fail(f"-C kept the group privilege: exit {p.returncode} writing into the real spool")
    m, c = simple_checks("nobody@example.test", ["bob@example.test"], b"hello\n")
    c.done()


@case("setgid-include-real-gid")
def setgid_include_real_gid(env, d):
    """An admin's alias includes a list a user maintains (the classic
    Sendmail set-up). The user points the list at the relay password file
    (group spoolmail, 0640): by a nested :include:, and by a symbolic link.
    Under the setgid install, `sendmail -bv` and `newaliases` run as that
    user read include files with the user's own rights and never print what
    a file holds, so the password stays unread."""
    if os.geteuid() != 0:
        raise Skip("needs root, to install setgid and to run as another user")
    binary = os.path.join(PREFIX, "sbin", "spoolmail")
    st = os.stat(binary)
    if not st.st_mode & 0o2000:
        raise Skip("spoolmail is not installed setgid (install.sh ran without root)")
    os.chmod(d, 0o755)
    secret = os.path.join(d, "relay-password")
    with open(secret, "w") as f:
        f.write("hunter2@secret.example\n")
    os.chown(secret, 0, st.st_gid)
    os.chmod(secret, 0o640)
    nested, link = os.path.join(d, "list"), os.path.join(d, "link")
    with open(nested, "w") as f:
        f.write(f":include:{secret}\n")
    os.symlink(secret, link)
    for path in (nested,):
        os.chown(path, 65534, 65534)
    with open(ALIASES, "w") as f:
        f.write(f"team: :include:{nested}\nteam2: :include:{link}\nok: ok@example.test\n")
    use_config(f"aliases_file = {ALIASES}")
    as_nobody = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]
    for argv in ([SENDMAIL, "-bv", "team", "team2", "ok"], [SENDMAIL, "-bi"]):
        p = run(as_nobody + argv, check=False, what=" ".join(argv[1:]) + " as uid 65534")
        out = (p.stdout + p.stderr).decode(errors="replace")
        if "hunter2" in out:
            raise Fail(f"{' '.join(argv[1:])} as uid 65534 printed the group's secret: {short(out, 300)}")
        if argv[1] == "-bv" and "ok@example.test... deliverable" not in out:
            raise Fail(f"-bv as uid 65534 did not verify the plain alias: {short(out, 300)}")


@case("check_mailq-postfix")
def check_mailq_postfix(env, d):
    script = check_mailq_setup(env, d)
    undo = marked_queue()
    try:
        rc, out = check_mailq_run(script, d, "postfix")
    finally:
        undo()
    if rc != 1 or not out.startswith("WARNING: postfix mailq is 3 "):
        raise Fail(f"check_mailq -M postfix -w 2 -c 5 with 3 queued: exit {rc}, {out!r}; "
                   "expected exit 1, 'WARNING: postfix mailq is 3 (threshold w = 2)'")
    if SERVERS and SERVERS.ready:
        deliver_and_check()  # the queue run empties the queue: all 3 land at Postfix
    else:
        clean_spool()
    rc, out = check_mailq_run(script, d, "postfix")
    if rc != 0 or "queue is empty" not in out:
        raise Fail(f"check_mailq -M postfix on an empty queue: exit {rc}, {out!r}; expected exit 0, "
                   "'OK: postfix mailq reports queue is empty'")


@case("check_mailq-sendmail")
def check_mailq_sendmail(env, d):
    script = check_mailq_setup(env, d)
    undo = marked_queue()
    try:
        rc, out = check_mailq_run(script, d, "sendmail")
    finally:
        undo()
    if rc != 1 or not out.startswith("WARNING: sendmail mailq is 3 "):
        raise Fail(
            f"check_mailq -M sendmail -w 2 -c 5 with 3 queued: exit {rc}, {out!r}; expected exit 1, "
            "'WARNING: sendmail mailq is 3'. Its sendmail mode (the one it picks when no -M is given and "
            "no Postfix, Exim, qmail or nullmailer is installed) takes the count only from a line matching "
            r"/mqueue/ and / \((\d+) request/ (Sendmail's '\t\t/var/spool/mqueue (3 requests)') or from one "
            r"matching /^\s+Total\sRequests:\s(\d+)$/i; Postfix's '-- N Kbytes in N Requests.' matches "
            "neither, so it reads 0")
