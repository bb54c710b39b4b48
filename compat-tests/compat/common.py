"""Paths, names and the runner every module uses: where the private install
lives, the test domains, Fail and Skip, and `run`, which bounds every
program by its own time-out and by the whole run's budget."""

import os
import pwd
import subprocess
import sys
import time



HERE = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))  # compat-tests/
ROOT = os.path.dirname(HERE)
WORK = os.path.join(HERE, "work")
PREFIX = os.path.join(WORK, "prefix")
SENDMAIL = os.path.join(PREFIX, "sbin", "sendmail")
MAILQ = os.path.join(PREFIX, "bin", "mailq")
SPOOL = os.path.join(PREFIX, "spool")
QUEUE = os.path.join(SPOOL, "queue")
CONFIG = os.path.join(PREFIX, "etc", "spoolmail.conf")
LOG = os.path.join(PREFIX, "log")
# The test CA and mx.example.test's certificate (made with openssl each run):
# Postfix's smtpd offers STARTTLS with it, spoolmail verifies it (tls_ca_file).
TLS_DIR = os.path.join(WORK, "tls")
CA_FILE = os.path.join(TLS_DIR, "ca.pem")
# The aliases file of the cron-debian-aliases case.
ALIASES = os.path.join(WORK, "aliases")
# The test domains: both have an MX record (from the DNS fixture) pointing at
# the private Postfix, which accepts every address in them. DOMAIN is also
# spoolmail's qualify_domain, so `root` becomes root@example.test and lands
# there too.
DOMAIN = "example.test"
OTHER = "other.test"
MX_HOST = "mx." + DOMAIN
MX_ADDR = "127.0.0.25"  # Postfix's smtpd listens here, on a free port
DNS_FIXTURE = os.path.join(ROOT, "tests", "fixtures", "dns_server.py")
POSTFIX_PKG = os.path.join(WORK, "postfix-pkg")  # Debian's postfix, dpkg -x'd
NAGIOS_DIR = "/usr/lib/nagios/plugins"
IS_ROOT = os.geteuid() == 0
ME = pwd.getpwuid(os.geteuid()).pw_name
LOCAL_SENDER = f"{ME}@{DOMAIN}"
# Packages that provide mail-transport-agent on Debian: never installed here.
MTA_PROVIDES = "mail-transport-agent"


def note(msg):
    print(f"# {msg}", file=sys.stderr, flush=True)


class Fail(Exception):
    pass


class Skip(Exception):
    pass


def short(value, limit=160):
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


# The whole run, installs included, stops within this many seconds: every
# program gets at most what is left of it.
BUDGET = 540
DEADLINE = time.time() + BUDGET


def run(argv, *, input=None, timeout=30, env=None, cwd=None, check=True, what=None):
    """Runs a program under coreutils' timeout (which also ends what it
    started), within `timeout` seconds and the run's deadline; stdin is empty
    unless `input` is given. Raises Fail when it runs out of time."""
    what = what or os.path.basename(argv[0])
    limit = int(min(timeout, DEADLINE - time.time()))
    if limit < 1:
        raise Fail(f"not run: the run's time budget of {BUDGET}s is used up")
    if isinstance(input, str):
        input = input.encode()
    try:
        p = subprocess.run(
            ["timeout", "-k", "5", str(limit), *argv],
            input=input if input is not None else b"",
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            timeout=limit + 15,
            env=env,
            cwd=cwd,
        )
    except subprocess.TimeoutExpired:
        raise Fail(f"{what} did not finish within {limit}s")
    except OSError as e:
        raise Fail(f"cannot run {what}: {e}")
    if p.returncode in (124, 137):
        raise Fail(f"{what} did not finish within {limit}s")
    if check and p.returncode != 0:
        err = (p.stderr or p.stdout).decode(errors="replace").strip().splitlines()
        raise Fail(f"{what} exited {p.returncode}: {short(' | '.join(err[-3:]), 300)}")
    return p
