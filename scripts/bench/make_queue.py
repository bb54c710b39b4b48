#!/usr/bin/env python3
"""Fills a spool's queue/ with copies of one real deferred message, for the
benchmarks over large queues (bench-ctl, bench-scale).

    make_queue.py QUEUE_DIR MESSAGE STATE FIRST END STATES COPY

MESSAGE and STATE: a message file and its state file as spoolmail wrote
them (the message queued, then deferred by one pass), the template. Each
copy I in FIRST..END-1 gets the id PREFIX + I (5 hex digits) + I % 4096
(3), PREFIX the template's first 8 digits, in the envelope, the state's
`id` line and its copy of the envelope. The state's next attempt is set a
day away. STATES: `due`, its mtime is that time (spool format 1.6, "Due
times"), or `written`, the time of writing. COPY: 1 keeps the state as
written, 0 takes out the copy of the envelope (`envelope`, `content-size`:
a state as spool format 1.7 and before wrote it)."""
import os
import re
import sys
import time

qdir, msg_path, state_path = sys.argv[1:4]
first, end = int(sys.argv[4]), int(sys.argv[5])
states, copy = sys.argv[6], sys.argv[7] == "1"
if states not in ("due", "written"):
    sys.exit("STATES must be due or written")
head, sep, rest = open(msg_path, "rb").read().partition(b"\n\n")
template_id = re.search(rb"(?m)^id ([0-9A-F]{16})$", head).group(1)
state = open(state_path, "rb").read()
if b" deferred " not in state:
    sys.exit(f"the template state is not a deferral: {state!r}")
nxt = int(time.time()) + 86400
state = re.sub(rb"(?m)^next \d+$", b"next %d" % nxt, state)
if not copy:
    state = re.sub(rb"(?m)^(envelope .*|content-size \d+)\n", b"", state)
prefix = template_id[:8].decode()
flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL
for i in range(first, end):
    qid = f"{prefix}{i:05X}{i % 4096:03X}".encode()
    for name, text in ((qid, head.replace(template_id, qid) + sep + rest),
                       (qid + b".state", state.replace(template_id, qid))):
        fd = os.open(os.path.join(qdir.encode(), name), flags, 0o640)
        os.write(fd, text)
        if states == "due" and name.endswith(b".state"):
            os.utime(fd, (nxt + 1, nxt))
        os.close(fd)
