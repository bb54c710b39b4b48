"""Checks on one message: recorded on the queued message, then replayed on
every copy Postfix delivered; and the delivery step that does it."""

import os
import re

from .common import Fail, LOG, MX_ADDR, MX_HOST, PREFIX, SENDMAIL, Skip, run, short
from .spool import CURRENT, Queued, queued
from .servers import SERVERS


class Checks:
    """Checks on one message. What a case checks on the queued message
    (standard(), header(), body()) is recorded and checked again, by replay(),
    on every copy Postfix delivered."""

    def __init__(self, msg, record=True):
        self.msg = msg
        self.problems = []
        self.ops = []
        if record and isinstance(msg, Queued):
            CURRENT.checks[msg.id] = self

    def eq(self, what, got, want):
        if got != want:
            self.problems.append(f"{what}: got {short(got)}, expected {short(want)}")

    def true(self, what, cond):
        if not cond:
            self.problems.append(what)

    def envelope(self, sender, rcpts):
        self.eq("envelope sender", self.msg.sender, sender)
        self.eq("envelope recipients", sorted(self.msg.rcpts), sorted(rcpts))

    def standard(self):
        """What every message must have: one From, Date and Message-ID; no Bcc."""
        self.ops.append(("standard",))
        for name in ("From", "Date", "Message-ID"):
            n = len(self.msg.headers(name))
            self.true(f"{n} {name} headers, expected 1", n == 1)
        for name in ("Bcc", "Resent-Bcc"):
            got = self.msg.headers(name)
            self.true(f"{name} header left in: {short(got)}", not got)
        self.true("a CR in the stored content", b"\r" not in self.msg.content)

    def header(self, name, want):
        self.ops.append(("header", name, want))
        self.eq(f"{name} header", self.msg.header(name), want)

    def body(self, want, what="body"):
        self.ops.append(("body", want, what))
        self.same(what, self.msg.body, want)

    def same(self, what, got, want):
        if got == want:
            return
        i = next((k for k in range(min(len(got), len(want))) if got[k] != want[k]), min(len(got), len(want)))
        self.problems.append(
            f"{what} differs at byte {i} (got {len(got)} bytes, expected {len(want)}): "
            f"got {short(got[max(0, i - 20):i + 40])}, expected {short(want[max(0, i - 20):i + 40])}"
        )

    def replay(self, other):
        c = Checks(other, record=False)
        for op in self.ops:
            getattr(c, op[0])(*op[1:])
        return c.problems

    def done(self):
        if self.problems:
            raise Fail(f"{self.msg.id}: " + "; ".join(self.problems))


def describe_stuck(m):
    """Why a message is still in spoolmail's queue: its state file and log."""
    state_path = m.path + ".state"
    state = open(state_path).read().split("\n") if os.path.exists(state_path) else ["no state file (never attempted)"]
    log_lines = []
    try:
        with open(os.path.join(PREFIX, "log"), errors="replace") as f:
            log_lines = [line.strip() for line in f if m.id in line and "status=" in line]
    except OSError:
        pass
    subject = m.header("Subject")
    return (f"{m.id} (Subject {short(subject, 60)}, to {m.rcpts}): "
            + short(" / ".join(x for x in state if x.startswith("rcpt") or not x.startswith("SPOOLMAIL")), 300)
            + (f"; log: {short(log_lines[-1], 300)}" if log_lines else ""))


def need_receiver():
    if not (SERVERS and SERVERS.ready):
        why = SERVERS.why_not if SERVERS else "not started"
        raise Skip(f"checked in spoolmail's spool only; not delivered end to end: {why}")


def expect_spool_empty(after):
    left = queued()
    if left:
        raise Fail(f"still in spoolmail's queue after {after}: " + "; ".join(describe_stuck(m) for m in left))


def tls_problems(copies):
    """Every copy came over TLS: Postfix's Received line names the protocol
    and cipher (smtpd_tls_received_header), and spoolmail logged, for this
    case, a verified TLS connection to the MX with that protocol and nothing
    less (no Untrusted/Trusted connection, no failed handshake)."""
    problems = []
    with open(LOG, "rb") as f:
        f.seek(CURRENT.log_offset)
        log = f.read().decode(errors="replace")
    port = SERVERS.postfix.port
    verified = re.findall(r"Verified TLS connection established to %s\[%s\]:%d: (TLSv[\d.]+) with cipher \S+"
                          % (re.escape(MX_HOST), re.escape(MX_ADDR), port), log)
    if not verified:
        tls_lines = [line.strip() for line in log.splitlines() if "TLS" in line]
        problems.append(f"spoolmail's log has no 'Verified TLS connection established to {MX_HOST}[{MX_ADDR}]:{port}' "
                        f"line for this case; its TLS lines: {short(tls_lines[-3:], 300)}")
    weaker = [line.strip() for line in log.splitlines()
              if re.search(r"\b(Untrusted|Trusted) TLS connection|TLS handshake .* failed", line)]
    if weaker:
        problems.append(f"spoolmail's log: {short(weaker[-1], 300)}")
    for c in copies:
        m = re.search(rb"\(using (TLSv[\d.]+) with cipher (\S+)", c.received)
        if not m or b" with ESMTPS " not in c.received:
            problems.append(f"{c.id} did not come over TLS: Postfix's Received line is {short(c.received, 300)}")
        elif verified and m.group(1).decode() not in verified:
            problems.append(f"{c.id} came over {m.group(1).decode()}, spoolmail logged {sorted(set(verified))}")
    return problems


def deliver_and_check(msgs=None, *, run_queue=True):
    """Runs `sendmail -q`, expects spoolmail's queue empty, then checks that
    Postfix received every queued message once per envelope recipient, each
    copy with Return-Path = the envelope sender and Delivered-To = the
    recipient, the content exactly as it was queued (header and body, byte for
    byte), and whatever the case checked in the spool still true."""
    msgs = CURRENT.queued if msgs is None else msgs
    need_receiver()
    CURRENT.delivered = True
    if run_queue:
        p = run([SENDMAIL, "-q"], timeout=120, check=False, what="sendmail -q")
        expect_spool_empty("sendmail -q")
        if p.returncode != 0:
            raise Fail(f"sendmail -q exited {p.returncode}: {short(p.stderr.decode(errors='replace').strip(), 300)}")
    else:
        expect_spool_empty("the caller's own delivery")
    copies = SERVERS.postfix.wait(sum(len(m.rcpts) for m in msgs))
    by_mid = {}
    for c in copies:
        by_mid.setdefault(c.header("Message-ID"), []).append(c)
    problems = {}  # problem -> recipients whose copy has it

    def problem(text, rcpt):
        problems.setdefault(text, []).append(rcpt)

    for m in msgs:
        got = by_mid.pop(m.header("Message-ID"), [])
        got_rcpts = sorted(c.rcpt.lower() for c in got)
        if got_rcpts != sorted(r.lower() for r in m.rcpts):
            problem(f"{m.id}: copies landed for {got_rcpts}, expected one for each of {sorted(m.rcpts)}", "")
        recorded = CURRENT.checks.get(m.id)
        for c in got:
            if c.return_path != f"<{m.sender}>":
                problem(f"Return-Path {c.return_path!r}, expected the envelope sender <{m.sender}>", c.rcpt)
            if c.original_to != c.rcpt:
                problem(f"X-Original-To {c.original_to!r} differs from Delivered-To", c.rcpt)
            check = Checks(c, record=False)
            check.same("content (header and body) vs what was queued", c.content, m.content)
            if recorded:
                check.problems += recorded.replay(c)
            else:
                check.standard()
            for text in check.problems:
                problem(text, c.rcpt)
    for text in tls_problems(copies):
        problem(text, "")
    for mid, extra in by_mid.items():
        c = extra[0]
        problem(f"an unexpected message landed: Subject {short(c.header('Subject'), 80)}, "
                f"Return-Path {c.return_path}, Message-ID {mid}", ",".join(x.rcpt for x in extra))
    if problems:
        raise Fail("at Postfix: " + "; ".join(
            f"{text}" + (f" (copy for {', '.join(sorted(set(r)))})" if any(r) else "") for text, r in problems.items()))
    return copies
