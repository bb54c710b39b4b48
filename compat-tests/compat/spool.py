"""Messages: in spoolmail's spool (read as doc/SPOOL.md describes, not with
spoolmail's own reader) and where Postfix delivered them; and what the
current case queued."""

import email.utils
import os
import re
import types

from .common import Fail, LOG, QUEUE, SPOOL, short


class Message:
    """A message's content (LF line endings): header fields and body."""

    def __init__(self, content, name):
        self.id = name
        self.content = content
        head, sep, self.body = content.partition(b"\n\n")
        self.header_bytes = head + b"\n"
        if not sep:  # no body at all
            self.header_bytes, self.body = content, b""
        self.fields = []  # (name as written, unfolded value)
        for raw in re.split(rb"\n(?![ \t])", head):
            if not raw:
                continue
            name, colon, value = raw.partition(b":")
            if not colon:
                raise Fail(f"{self.id}: header line without a colon: {short(raw)}")
            value = re.sub(rb"\n([ \t])", rb"\1", value).strip()
            self.fields.append((name.decode("ascii", "replace"), value.decode("utf-8", "replace")))

    def headers(self, name):
        return [v for n, v in self.fields if n.lower() == name.lower()]

    def header(self, name):
        values = self.headers(name)
        return values[0] if len(values) == 1 else None

    def addresses(self, *names):
        values = [v for name in names for v in self.headers(name)]
        return [a.lower() for _, a in email.utils.getaddresses(values) if a]


class Queued(Message):
    """One committed message file, queue/QID, parsed as doc/SPOOL.md describes."""

    def __init__(self, path):
        self.path = path
        qid = os.path.basename(path)
        data = open(path, "rb").read()
        envelope, sep, content = data.partition(b"\n\n")
        if not sep:
            raise Fail(f"{qid}: no empty line after the envelope")
        lines = envelope.decode("utf-8").split("\n")
        if lines[0] != "SPOOLMAIL 1":
            raise Fail(f"{qid}: magic line is {lines[0]!r}")
        self.env = {}
        self.rcpts = []
        self.orcpts = {}
        for line in lines[1:]:
            key, _, value = line.partition(" ")
            if key == "rcpt":
                self.rcpts.append(value.rstrip(" "))
            elif key == "orcpt":
                self.orcpts[len(self.rcpts) - 1] = value.rstrip(" ")
            else:
                self.env[key] = value.rstrip(" ")
        self.sender = self.env.get("sender")
        super().__init__(content, qid)


class Landed(Message):
    """One file in Postfix's maildir: what virtual(8) delivered to one
    recipient. It prepends Return-Path (the envelope sender), X-Original-To
    and Delivered-To (the envelope recipient), after smtpd's cleanup put its
    Received line on top of the message as spoolmail sent it; those trace
    lines are taken off, and `content` is the rest."""

    def __init__(self, path):
        self.path = path
        data = open(path, "rb").read()
        rest = data
        trace = {}
        for name in ("Return-Path", "X-Original-To", "Delivered-To"):
            m = re.match(rb"%s: ([^\n]*)\n" % name.encode(), rest)
            if not m:
                raise Fail(f"{path}: no {name} line where Postfix's virtual(8) puts it: {short(rest[:200])}")
            trace[name] = m.group(1).decode("utf-8", "replace")
            rest = rest[m.end():]
        m = re.match(rb"Received: [^\n]*\n(?:[ \t][^\n]*\n)*", rest)
        if not m or b"(Postfix)" not in m.group(0):
            raise Fail(f"{path}: no Received line of Postfix's smtpd on top: {short(rest[:200])}")
        self.received = m.group(0)
        self.return_path = trace["Return-Path"]
        self.original_to = trace["X-Original-To"]
        self.rcpt = trace["Delivered-To"]
        super().__init__(rest[m.end():], f"copy for {self.rcpt}")


# What the current case queued and what it checked there: the delivery step
# delivers exactly those messages and checks every copy again where it lands.
CURRENT = types.SimpleNamespace(queued=[], checks={}, delivered=False, delivery_optional=False,
                                config_changed=False, log_offset=0)


def reset_current():
    CURRENT.queued, CURRENT.checks = [], {}
    CURRENT.delivered = CURRENT.delivery_optional = CURRENT.config_changed = False
    # spoolmail's log is read from here on (its TLS lines for this case).
    CURRENT.log_offset = os.path.getsize(LOG) if os.path.exists(LOG) else 0


def clean_spool():
    for sub in ("queue", "tmp"):
        d = os.path.join(SPOOL, sub)
        for name in os.listdir(d):
            os.unlink(os.path.join(d, name))


def queued():
    names = sorted(n for n in os.listdir(QUEUE) if not n.endswith(".state"))
    return [Queued(os.path.join(QUEUE, n)) for n in names]


def expect_messages(count):
    msgs = queued()
    if len(msgs) != count:
        left = os.listdir(os.path.join(SPOOL, "tmp"))
        extra = f" (tmp/ holds {left})" if left else ""
        raise Fail(f"{len(msgs)} message(s) in the queue, expected {count}{extra}")
    known = {m.id for m in CURRENT.queued}
    CURRENT.queued += [m for m in msgs if m.id not in known]
    return msgs
