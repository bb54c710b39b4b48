#!/usr/bin/env python3
"""Helpers for scripts/bench-queue (stdlib only). Subcommands:

  gen DIR FIRST COUNT ADDR...   write COUNT 2048-byte messages DIR/NNNNN.eml,
                                numbered from FIRST, each with a unique
                                X-Bench-Seq header; To: cycles through ADDRs
  submit DIR JOBS -- CMD...     feed every DIR/*.eml (in name order) to CMD on
                                stdin, JOBS at a time (1: strictly in order);
                                fails on any non-zero exit
  relay IP:PORT COUNTS HOLD PREFIX
                                an SMTP server (PIPELINING: commands answered
                                in order) that holds its reply to RCPT TO for
                                HOLD seconds when the local part starts with
                                PREFIX; writes `conns=N ordinary=N slow=N` to
                                COUNTS after each change
  tarpit IP:PORT COUNTS         accepts TCP connections and never says a word;
                                writes `conns=N` to COUNTS
  tls-sink IP:PORT COUNTS SEQS CERT KEY [--workers N]
                                an SMTP sink (PIPELINING) that offers STARTTLS
                                with CERT/KEY and takes mail only under TLS
                                (530 to MAIL before it); each message's
                                X-Bench-Seq is appended to SEQS; writes
                                `conns=N starttls=N tls=N resumed=N
                                tlsfail=N plain=N mesg=N` to COUNTS (tls:
                                handshakes done, resumed: of which resumed
                                sessions, plain: MAILs refused without TLS);
                                N (2) processes share the listening socket;
                                no per-command time-out: it lives until
                                SIGTERM, at most an hour
  tls-blast IP:PORT CA COUNT CONNS
                                a trivial client for measuring tls-sink alone:
                                CONNS processes, one connection each (CONNS
                                0: one connection per message, 10 processes),
                                STARTTLS verified against CA, COUNT messages
                                in all, MAIL/RCPT/DATA pipelined
  timeit COUNTS KEY TARGET TIMEOUT [--wait-cmd S] [--kill-cmd] -- CMD...
                                starts CMD (own session), polls COUNTS every
                                5 ms until the last KEY=N in it reaches TARGET;
                                then waits up to S seconds for CMD to exit
                                (--kill-cmd: kills its process group instead).
                                Prints one line: `secs=X count=N reached=0|1
                                rc=R cmd_secs=Y` (rc=killed when killed)
  counts FILE KEY...            the last value of each KEY=N in FILE (0 if none)
  verify-dump DIR FIRST COUNT   every X-Bench-Seq FIRST..FIRST+COUNT-1 exactly
                                once among smtp-sink's dump files
  verify-seqs FILE FIRST COUNT  the same over tls-sink's SEQS file
  ready IP:PORT TIMEOUT         waits until a TCP connect succeeds
  report RESULTS COUNT HOLD     the tables (RESULTS: PART CONTENDER RUN STATUS
                                SECS CONNS NOTE per line, tab-separated);
                                exits 1 when a run failed or a goal was missed
"""
import asyncio
import os
import re
import signal
import socket
import ssl
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor


def gen(d, first, count, addrs):
    os.makedirs(d, exist_ok=True)
    body = "".join(f"Line {i:02d} of the body, padding the message to two kilobytes.......\n" for i in range(1, 41))
    for n in range(first, first + count):
        to = addrs[(n - first) % len(addrs)]
        head = (f"To: {to}\nFrom: alice@example.org\nSubject: bench-queue message {n}\n"
                f"X-Bench-Seq: {n}\n\n")
        text = (head + body)[:2047] + "\n"
        assert len(text) == 2048
        with open(os.path.join(d, f"{n:05d}.eml"), "w") as f:
            f.write(text)


def submit(d, jobs, cmd):
    files = sorted(os.path.join(d, f) for f in os.listdir(d) if f.endswith(".eml"))

    def one(path):
        with open(path, "rb") as f:
            r = subprocess.run(cmd, stdin=f, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        return path, r.returncode, r.stderr.decode(errors="replace").strip()

    bad = []
    if jobs <= 1:
        results = map(one, files)
    else:
        results = ThreadPoolExecutor(jobs).map(one, files)
    for path, rc, err in results:
        if rc != 0:
            bad.append(f"{os.path.basename(path)}: exit {rc}: {err[-300:]}")
    if bad:
        sys.exit("submit: %d of %d failed; first: %s" % (len(bad), len(files), bad[0]))


class Counts:
    def __init__(self, path, **fields):
        self.path, self.fields = path, dict(fields)
        self.write()

    def bump(self, key):
        self.fields[key] += 1
        self.write()

    def write(self):
        tmp = self.path + ".tmp"
        with open(tmp, "w") as f:
            f.write(" ".join(f"{k}={v}" for k, v in self.fields.items()) + "\n")
        os.replace(tmp, self.path)


def hostport(s):
    host, port = s.rsplit(":", 1)
    return host, int(port)


async def relay_session(reader, writer, counts, hold, prefix):
    counts.bump("conns")

    async def reply(text):
        writer.write(text.encode() + b"\r\n")
        await writer.drain()

    slow, rcpts = False, 0
    try:
        await reply("220 bench-relay ESMTP")
        while True:
            line = await asyncio.wait_for(reader.readline(), 600)
            if not line:
                return
            cmd = line.decode("latin-1").strip()
            verb = cmd[:4].upper()
            if verb == "EHLO":
                await reply("250-bench-relay\r\n250-PIPELINING\r\n250-8BITMIME\r\n250 ENHANCEDSTATUSCODES")
            elif verb == "HELO":
                await reply("250 bench-relay")
            elif verb == "MAIL":
                slow, rcpts = False, 0
                await reply("250 2.1.0 Ok")
            elif verb == "RCPT":
                m = re.search(r"<([^>]*)>", cmd)
                local = (m.group(1) if m else "").split("@")[0]
                if local.lower().startswith(prefix):
                    slow = True
                    await asyncio.sleep(hold)
                rcpts += 1
                await reply("250 2.1.5 Ok")
            elif verb == "DATA":
                if not rcpts:
                    await reply("503 5.5.1 Error: need RCPT command")
                    continue
                await reply("354 End data with <CR><LF>.<CR><LF>")
                while True:
                    data = await asyncio.wait_for(reader.readline(), 600)
                    if not data:
                        return
                    if data in (b".\r\n", b".\n"):
                        break
                counts.bump("slow" if slow else "ordinary")
                slow, rcpts = False, 0
                await reply("250 2.0.0 Ok: queued")
            elif verb == "RSET":
                slow, rcpts = False, 0
                await reply("250 2.0.0 Ok")
            elif verb == "NOOP":
                await reply("250 2.0.0 Ok")
            elif verb == "QUIT":
                await reply("221 2.0.0 Bye")
                return
            else:
                await reply("502 5.5.2 Error: command not recognized")
    except (asyncio.TimeoutError, ConnectionError):
        pass
    finally:
        writer.close()


async def tarpit_session(reader, writer, counts):
    counts.bump("conns")
    try:
        while await reader.read(4096):
            pass  # swallow whatever comes, say nothing
    except ConnectionError:
        pass
    finally:
        writer.close()



BENCH_SEQ = re.compile(rb"^X-Bench-Seq: (\d+)\r?$", re.M)


async def tls_sink_session(reader, writer, st, ctx):
    counts, seqs = st
    counts.bump("conns")

    out = []

    def reply(text):
        out.append(text.encode() + b"\r\n")

    async def flush():
        if out:
            writer.write(b"".join(out))
            out.clear()
            await writer.drain()

    tls, mail, rcpts = False, False, 0
    try:
        reply("220 bench-tls-sink ESMTP")
        await flush()
        while True:
            line = await reader.readline()
            if not line:
                return
            verb = line[:4].upper()
            if verb == b"EHLO":
                reply("250-bench-tls-sink\r\n250-PIPELINING\r\n250-8BITMIME\r\n"
                      + ("" if tls else "250-STARTTLS\r\n") + "250 ENHANCEDSTATUSCODES")
            elif verb == b"HELO":
                reply("250 bench-tls-sink")
            elif verb == b"STAR" and line[:8].upper() == b"STARTTLS":
                if tls:
                    reply("503 5.5.1 Error: TLS already active")
                    continue
                counts.bump("starttls")
                # Anything pipelined after STARTTLS is the injection class of
                # bugs (CVE-2011-0411): a correct client sends nothing more.
                if reader._buffer:  # noqa: SLF001 (asyncio has no public peek)
                    counts.bump("tlsfail")
                    reply("554 5.5.1 Error: commands pipelined after STARTTLS")
                    await flush()
                    return
                reply("220 2.0.0 Ready to start TLS")
                await flush()
                try:
                    await asyncio.wait_for(writer.start_tls(ctx), 30)
                except (ssl.SSLError, OSError, asyncio.TimeoutError, ConnectionError):
                    counts.bump("tlsfail")
                    return
                tls, mail, rcpts = True, False, 0
                sslobj = writer.get_extra_info("ssl_object")
                if sslobj is not None and sslobj.session_reused:
                    counts.bump("resumed")
                counts.bump("tls")
                continue  # nothing to flush: the next reply is to the new EHLO
            elif verb == b"MAIL":
                if not tls:
                    counts.bump("plain")
                    reply("530 5.7.0 Must issue a STARTTLS command first")
                else:
                    mail, rcpts = True, 0
                    reply("250 2.1.0 Ok")
            elif verb == b"RCPT":
                if not mail:
                    reply("503 5.5.1 Error: need MAIL command")
                else:
                    rcpts += 1
                    reply("250 2.1.5 Ok")
            elif verb == b"DATA":
                if not rcpts:
                    reply("503 5.5.1 Error: need RCPT command")
                else:
                    reply("354 End data with <CR><LF>.<CR><LF>")
                    await flush()
                    first = await reader.readline()
                    if not first:
                        return
                    if first in (b".\r\n", b".\n"):
                        data = b""
                    else:
                        data = first + await reader.readuntil(b"\r\n.\r\n")
                    m = BENCH_SEQ.search(data)
                    os.write(seqs, (m.group(1) if m else b"none") + b"\n")  # O_APPEND: one line, whole
                    counts.bump("mesg")
                    mail, rcpts = False, 0
                    reply("250 2.0.0 Ok: queued")
            elif verb == b"RSET":
                mail, rcpts = False, 0
                reply("250 2.0.0 Ok")
            elif verb == b"NOOP":
                reply("250 2.0.0 Ok")
            elif verb == b"QUIT":
                reply("221 2.0.0 Bye")
                await flush()
                return
            else:
                reply("502 5.5.2 Error: command not recognized")
            # Replies to pipelined commands go out together.
            if not reader._buffer:  # noqa: SLF001
                await flush()
    except (asyncio.TimeoutError, asyncio.IncompleteReadError, asyncio.LimitOverrunError,
            ConnectionError, ssl.SSLError, OSError):
        pass
    finally:
        try:
            writer.close()
        except Exception:  # noqa: BLE001 (a TLS transport closing mid-way)
            pass


def tls_blast(listen, ca, count, conns):
    """Clients for tls-sink alone: how many messages a second it can take."""
    import multiprocessing
    per_msg = conns == 0
    procs = 10 if per_msg else conns
    shares = [count // procs + (1 if i < count % procs else 0) for i in range(procs)]
    firsts = [1 + sum(shares[:i]) for i in range(procs)]
    start = time.monotonic()
    with multiprocessing.Pool(procs) as pool:
        handshakes = sum(pool.starmap(_blast_one, [(listen, ca, f, n, per_msg) for f, n in zip(firsts, shares)]))
    secs = time.monotonic() - start
    print(f"tls-blast: {count} messages, {handshakes} handshakes, {procs} processes, "
          f"{secs:.3f} s, {count / secs:.0f} msgs/s")


def _blast_one(listen, ca, first, n, per_msg):
    host, port = hostport(listen)
    ctx = ssl.create_default_context(cafile=ca)
    body = "".join(f"Line {i:02d} of the body, padding the message to two kilobytes.......\r\n" for i in range(1, 41))
    handshakes = 0
    sock = f = None

    def expect(code):
        while True:
            line = f.readline()
            if not line.startswith(code):
                raise SystemExit(f"tls-blast: wanted {code}, got {line!r}")
            if line[3:4] != b"-":
                return

    def connect():
        nonlocal sock, f, handshakes
        raw = socket.create_connection((host, port))
        f = raw.makefile("rwb")
        expect(b"220")
        f.write(b"EHLO blast\r\n"); f.flush(); expect(b"250")
        f.write(b"STARTTLS\r\n"); f.flush(); expect(b"220")
        f.close()
        sock = ctx.wrap_socket(raw, server_hostname=host)
        handshakes += 1
        f = sock.makefile("rwb")
        f.write(b"EHLO blast\r\n"); f.flush(); expect(b"250")

    for seq in range(first, first + n):
        if sock is None:
            connect()
        f.write(b"MAIL FROM:<alice@example.org>\r\nRCPT TO:<bob@example.com>\r\nDATA\r\n")
        f.flush()
        expect(b"250"); expect(b"250"); expect(b"354")
        msg = f"To: bob@example.com\r\nX-Bench-Seq: {seq}\r\n\r\n" + body
        f.write(msg.encode() + b".\r\n"); f.flush(); expect(b"250")
        if per_msg:
            f.write(b"QUIT\r\n"); f.flush(); expect(b"221")
            f.close(); sock.close(); sock = None
    if sock is not None:
        f.write(b"QUIT\r\n"); f.flush(); expect(b"221")
        f.close(); sock.close()
    return handshakes


def verify_seqs(path, first, count):
    seen = {}
    with open(path) as f:
        for line in f:
            k = line.strip()
            seen[k] = seen.get(k, 0) + 1
    want = {str(n) for n in range(first, first + count)}
    missing = sorted(want - seen.keys(), key=lambda x: int(x))
    dup = sorted(k for k, v in seen.items() if v > 1)
    extra = sorted(seen.keys() - want)
    if missing or dup or extra:
        sys.exit(f"verify-seqs: {sum(seen.values())} messages; missing {len(missing)} {missing[:5]}, "
                 f"duplicated {len(dup)} {dup[:5]}, unexpected {len(extra)} {extra[:5]}")
    print(f"verified {count} distinct messages")


TLS_SINK_FIELDS = ("conns", "starttls", "tls", "resumed", "tlsfail", "plain", "mesg")


class SharedCounts:
    """tls-sink's counters: one slot per worker in shared memory; whichever
    worker counts writes the sums (under a lock, so that the file never goes
    back to an older sum), at most once every 2 ms."""

    def __init__(self, path, shm, slot):
        self.path, self.shm, self.slot, self.pending = path, shm, slot, False
        self.lock = open(path + ".lock", "a")

    def bump(self, key):
        i = (self.slot * len(TLS_SINK_FIELDS) + TLS_SINK_FIELDS.index(key)) * 8
        self.shm[i:i + 8] = (int.from_bytes(self.shm[i:i + 8], "little") + 1).to_bytes(8, "little")
        if not self.pending:
            self.pending = True
            asyncio.get_running_loop().call_later(0.002, self.write)

    def write(self):
        import fcntl
        self.pending = False
        fcntl.flock(self.lock, fcntl.LOCK_EX)
        try:
            write_sums(self.path, self.shm)
        finally:
            fcntl.flock(self.lock, fcntl.LOCK_UN)


def write_sums(path, shm):
    n = len(TLS_SINK_FIELDS)
    sums = [0] * n
    for j in range(len(shm) // 8):
        sums[j % n] += int.from_bytes(shm[j * 8:j * 8 + 8], "little")
    tmp = f"{path}.tmp{os.getpid()}"
    with open(tmp, "w") as f:
        f.write(" ".join(f"{k}={v}" for k, v in zip(TLS_SINK_FIELDS, sums)) + "\n")
    os.replace(tmp, path)


def tls_sink(listen, counts_path, seqs_path, cert, key, workers):
    """WORKERS processes (a Python event loop is one core's worth, and a TLS
    handshake costs it about 1.3 ms) sharing one listening socket."""
    import mmap
    host, port = hostport(listen)
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(cert, key)
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(1024)
    shm = mmap.mmap(-1, 8 * len(TLS_SINK_FIELDS) * workers)
    write_sums(counts_path, shm)
    seqs = os.open(seqs_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_APPEND, 0o644)
    parent = os.getpid()
    children = []
    for slot in range(workers):
        pid = os.fork()
        if pid == 0:
            try:
                asyncio.run(tls_sink_worker(sock, ctx, SharedCounts(counts_path, shm, slot), seqs, parent))
            finally:
                os._exit(0)
        children.append(pid)
    sock.close()

    def stop(*_):
        for pid in children:
            try:
                os.kill(pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGALRM, stop)
    signal.alarm(3600)  # bounded whatever happens: at most an hour
    for pid in children:
        while True:
            try:
                os.waitpid(pid, 0)
                break
            except InterruptedError:
                continue
            except ChildProcessError:
                break


async def tls_sink_worker(sock, ctx, counts, seqs, parent):
    loop = asyncio.get_running_loop()
    # asyncio reports every TLS connection that ends without close_notify.
    loop.set_exception_handler(lambda loop, c: None)
    st = (counts, seqs)
    server = await asyncio.start_server(lambda r, w: tls_sink_session(r, w, st, ctx),
                                        sock=sock, limit=2 ** 22)
    stop = asyncio.Event()
    for s in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(s, stop.set)
    async with server:
        while not stop.is_set() and os.getppid() == parent:
            try:
                await asyncio.wait_for(stop.wait(), 1)
            except asyncio.TimeoutError:
                pass
    counts.write()


async def serve(kind, listen, counts_path, hold=0.0, prefix="slow"):
    host, port = hostport(listen)
    if kind == "relay":
        counts = Counts(counts_path, conns=0, ordinary=0, slow=0)
        handler = lambda r, w: relay_session(r, w, counts, hold, prefix)
    else:
        counts = Counts(counts_path, conns=0)
        handler = lambda r, w: tarpit_session(r, w, counts)
    server = await asyncio.start_server(handler, host, port, backlog=1024, reuse_address=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for s in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(s, stop.set)
    async with server:
        # Bounded in time whatever happens: at most an hour.
        try:
            await asyncio.wait_for(stop.wait(), 3600)
        except asyncio.TimeoutError:
            pass


def last_value(text, key):
    found = re.findall(r"(?:^|[\s\r])" + re.escape(key) + r"=(\d+)", text)
    return int(found[-1]) if found else 0


def read_counts(path, keys):
    try:
        with open(path, "rb") as f:
            text = f.read().decode("latin-1")
    except FileNotFoundError:
        text = ""
    return [last_value(text, k) for k in keys]


def timeit(counts, key, target, timeout, wait_cmd, kill_cmd, cmd):
    start = time.monotonic()
    proc = subprocess.Popen(cmd, start_new_session=True, stdin=subprocess.DEVNULL)
    reached, n, secs, cmd_secs = False, 0, None, None
    deadline = start + timeout
    while True:
        now = time.monotonic()
        (n,) = read_counts(counts, [key])
        if n >= target:
            reached, secs = True, now - start
            break
        if now >= deadline:
            secs = now - start
            break
        if cmd_secs is None and proc.poll() is not None:
            cmd_secs = time.monotonic() - start
        time.sleep(0.005)
    rc = proc.poll()
    if rc is None and kill_cmd:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        rc = "killed"
    elif rc is None:
        try:
            rc = proc.wait(timeout=wait_cmd)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            rc = "killed"
    if cmd_secs is None:
        cmd_secs = time.monotonic() - start
    (n,) = read_counts(counts, [key])
    print(f"secs={secs:.3f} count={n} reached={int(reached)} rc={rc} cmd_secs={cmd_secs:.3f}")


def verify_dump(d, first, count):
    seen = {}
    files = 0
    for root, _, names in os.walk(d):
        for name in names:
            files += 1
            with open(os.path.join(root, name), "rb") as f:
                m = re.search(rb"^X-Bench-Seq: (\d+)$", f.read(), re.M)
            if m:
                k = int(m.group(1))
                seen[k] = seen.get(k, 0) + 1
    want = set(range(first, first + count))
    missing = sorted(want - seen.keys())
    dup = sorted(k for k, v in seen.items() if v > 1)
    extra = sorted(seen.keys() - want)
    if missing or dup or extra:
        sys.exit(f"verify-dump: {files} files; missing {len(missing)} {missing[:5]}, "
                 f"duplicated {len(dup)} {dup[:5]}, unexpected {len(extra)} {extra[:5]}")
    print(f"verified {count} distinct messages in {files} files")


def ready(listen, timeout):
    host, port = hostport(listen)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            socket.create_connection((host, port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.05)
    sys.exit(f"ready: nothing listens on {listen} after {timeout}s")


def report(path, count, hold):
    import statistics
    rows = {}
    for line in open(path):
        part, who, run, status, secs, conns, note = line.rstrip("\n").split("\t")
        rows.setdefault(part, {}).setdefault(who, []).append((int(run), status, secs, conns, note))
    failed = False

    def summary(runs):
        """(status, median secs, list of secs, median conns, notes)"""
        bad = [r for r in runs if r[1] in ("FAIL",)]
        if bad:
            return "FAILED", None, [], None, [f"run {r[0]}: {r[4]}" for r in bad]
        if runs[0][1] == "SKIP":
            return "SKIPPED", None, [], None, [runs[0][4]]
        capped = [r for r in runs if r[1] == "CAPPED"]
        secs = [float(r[2]) for r in runs]
        conns = [int(r[3]) for r in runs if r[3] not in ("-", "")]
        status = "CAPPED" if capped else "ok"
        med = statistics.median(secs)
        # The note of the run nearest the median (notes carry per-run numbers).
        near = min(runs, key=lambda r: abs(float(r[2]) - med))
        notes = [near[4] + (f" (run {near[0]})" if len(runs) > 1 else "")] if near[4] else []
        return status, med, secs, (statistics.median(conns) if conns else None), notes

    def fmt_runs(secs):
        return " ".join(f"{x:.2f}" for x in secs)

    def fmt_n(x):
        return "-" if x is None else (f"{x:g}")

    def limit_of(res, prefix):
        """The best median rate of the contenders named PREFIX-N, and N."""
        best = None
        for w, st in res.items():
            if w.startswith(prefix) and st[0] == "ok":
                rate = count / st[1]
                if best is None or rate > best[0]:
                    best = (rate, w[len(prefix):])
        return best

    def limit_goal(res, limit, conns_of):
        """The 0.8x goal line: the best spoolmail contender over at most 25 sessions."""
        nonlocal failed
        if not limit:
            return
        best = None
        for w, st in res.items():
            if (w == "spoolmail" or w.startswith("spoolmail-")) and st[0] == "ok":
                c = conns_of(w)
                if c is not None and c <= 25 and (best is None or st[1] < best[1]):
                    best = (w, st[1], c)
        if best is None:
            return
        ratio = (count / best[1]) / limit[0]
        ok = ratio >= 0.8
        failed |= not ok
        print(f"   goal: spoolmail >= 0.8x the limit over at most 25 sessions: {'MET' if ok else 'NOT MET'}"
              f" ({best[0]}: {ratio:.2f}x over {fmt_n(best[2])} connections; the limit {limit[0]:.0f} msgs/s"
              f" at {limit[1]} sessions)")

    def floor_line(res, limit, floor, conns_of):
        """spoolmail's contenders against the null limit and the durable floor, side by side."""
        if not floor:
            return
        print(f"   the durable floor: {floor[0]:.0f} msgs/s (durable-floor-{floor[1]}), "
              + (f"{floor[0] / limit[0]:.2f}x the limit" if limit else "no limit measured"))
        bound = limit_of(res, "nosync-floor-")
        if bound and limit:
            reach = "within" if bound[0] / limit[0] >= 0.8 else "out of"
            print(f"   the same without any fsync: {bound[0]:.0f} msgs/s (nosync-floor-{bound[1]}), "
                  f"{bound[0] / limit[0]:.2f}x the limit: 0.8x is {reach} reach of a runner that keeps a file "
                  "a message, however it groups or overlaps its fsyncs")
        for w, st in res.items():
            if (w == "spoolmail" or w.startswith("spoolmail-") or w == "base") and st[0] == "ok":
                rate = count / st[1]
                vl = f"{rate / limit[0]:.2f}x the limit, " if limit else ""
                print(f"   {w}: {rate:.0f} msgs/s over {fmt_n(conns_of(w))} connections: "
                      f"{vl}{rate / floor[0]:.2f}x the durable floor")

    if "throughput" in rows:
        t = rows["throughput"]
        print()
        print(f"1. Queue run: {count} queued 2048-byte messages to smtp-sink on 127.0.0.1, from the start")
        print("   of the flush until the sink counted them all (every run verified: count, dump, empty queue)")
        print("   (source-N: Postfix's smtp-source, N sessions, into the same sink: the best is the limit;")
        print("   durable-floor-N: tls-source --plain --spool, N sessions, the least a runner that keeps every")
        print("   outcome durable does: the best is the floor; nosync-floor-N: the same without fsync, not durable;")
        print("   disk-floor-N: its file work alone, no network)")
        print(f"   {'contender':<16} {'msgs/s':>8} {'secs':>7}  {'runs (s)':<24} {'conns':>6} {'rate vs postfix':>16} {'vs limit':>9} {'vs floor':>9}")
        res = {w: summary(r) for w, r in t.items()}
        pf = res.get("postfix")
        pf_rate = count / pf[1] if pf and pf[0] == "ok" else None
        limit = limit_of(res, "source-")
        floor = limit_of(res, "durable-floor-")
        for w, (status, med, secs, conns, notes) in res.items():
            if status != "ok":
                failed |= status == "FAILED"
                print(f"   {w:<16} {status}: {'; '.join(notes)}")
                continue
            rate = count / med
            vs = f"{rate / pf_rate:.2f}x" if pf_rate else "-"
            vl = f"{rate / limit[0]:.2f}x" if limit else "-"
            vf = f"{rate / floor[0]:.2f}x" if floor else "-"
            print(f"   {w:<16} {rate:>8.0f} {med:>7.2f}  {fmt_runs(secs):<24} {fmt_n(conns):>6} {vs:>16} {vl:>9} {vf:>9}")
        sm = res.get("spoolmail")
        if sm and sm[0] == "ok" and pf_rate:
            ratio = (count / sm[1]) / pf_rate
            ok1 = ratio >= 1.5
            ok2 = sm[3] is not None and pf[3] is not None and sm[3] <= pf[3]
            failed |= not (ok1 and ok2)
            print(f"   goal: spoolmail >= 1.5x Postfix's rate: {'MET' if ok1 else 'NOT MET'} ({ratio:.2f}x);"
                  f" connections <= Postfix's: {'MET' if ok2 else 'NOT MET'} ({fmt_n(sm[3])} vs {fmt_n(pf[3])})")
        limit_goal(res, limit, lambda w: res[w][3])
        floor_line(res, limit, floor, lambda w: res[w][3])
    if "tls" in rows:
        t = rows["tls"]
        print()
        print(f"1b. TLS: the same {count} messages to a sink that offers STARTTLS (certificate from a throwaway CA)")
        print("   and takes mail only under TLS; handshakes counted at the sink, one per STARTTLS (every run")
        print("   verified: count, every X-Bench-Seq once, no MAIL refused without TLS, empty queue)")
        print("   (tls-source-N: a C client of this project's, N sessions, into the same sink: the best is the limit;")
        print("   durable-floor-N: the same client with --spool, the queued files' durable work: the best is the floor;")
        print("   nosync-floor-N: the same without fsync, not durable)")
        print(f"   {'contender':<16} {'msgs/s':>7} {'secs':>7}  {'runs (s)':<20} {'conns':>6} {'handshakes':>10} {'vs postfix':>10} {'vs limit':>9} {'vs floor':>9}  notes")
        res = {}
        for w, runs in t.items():
            st = summary([r[:3] + ("-",) + r[4:] for r in runs])  # conns carry C:H:R
            cs = [r[3].split(":") for r in runs if r[1] == "ok" and ":" in r[3]]
            conns = statistics.median(int(c[0]) for c in cs) if cs else None
            hs = statistics.median(int(c[1]) for c in cs) if cs else None
            resumed = sum(int(c[2]) for c in cs)
            res[w] = (st, conns, hs, resumed)
        pf = res.get("postfix")
        pf_rate = count / pf[0][1] if pf and pf[0][0] == "ok" else None
        limit = limit_of({w: r[0] for w, r in res.items()}, "tls-source-")
        floor = limit_of({w: r[0] for w, r in res.items()}, "durable-floor-")
        for w, ((status, med, secs, _, notes), conns, hs, resumed) in res.items():
            if status != "ok":
                failed |= status == "FAILED"
                print(f"   {w:<16} {status}: {'; '.join(notes)}")
                continue
            rate = count / med
            vs = f"{rate / pf_rate:.2f}x" if pf_rate else "-"
            extra = (f"; {resumed} resumed sessions" if resumed else "")
            vl = f"{rate / limit[0]:.2f}x" if limit else "-"
            vf = f"{rate / floor[0]:.2f}x" if floor else "-"
            print(f"   {w:<16} {rate:>7.0f} {med:>7.2f}  {fmt_runs(secs):<20} {fmt_n(conns):>6} {fmt_n(hs):>10} {vs:>10} {vl:>9} {vf:>9}  {' | '.join(notes)}{extra}")
        sm = res.get("spoolmail")
        if sm and sm[0][0] == "ok":
            ok = sm[2] is not None and sm[2] <= count / 50
            failed |= not ok
            print(f"   goal: spoolmail's handshakes far fewer than the messages (at most 1 in 50): "
                  f"{'MET' if ok else 'NOT MET'} ({fmt_n(sm[2])} for {count}); each one logged Verified")
        limit_goal({w: r[0] for w, r in res.items()}, limit, lambda w: res[w][1])
        floor_line({w: r[0] for w, r in res.items()}, limit, floor, lambda w: res[w][1])
    if "slowhost" in rows:
        t = rows["slowhost"]
        print()
        print("2. Slow host: seconds from the start of the flush until the 40 messages to 127.0.0.2 are at its")
        print("   sink, while 5 queued before them go to a tarpit on 127.0.0.3 (accepts, never speaks)")
        print(f"   {'contender':<10} {'secs':>7}  {'runs (s)':<24} {'conns':>6}  notes")
        for w, runs in t.items():
            status, med, secs, conns, notes = summary(runs)
            if status != "ok":
                failed |= status == "FAILED"
                print(f"   {w:<10} {status}: {'; '.join(notes)}")
                continue
            print(f"   {w:<10} {med:>7.2f}  {fmt_runs(secs):<24} {fmt_n(conns):>6}  {' | '.join(notes)}")
        st = summary(t["spoolmail"]) if "spoolmail" in t else None
        if st and st[0] == "ok":
            ok = st[1] < 5
            failed |= not ok
            print(f"   goal: spoolmail under 5 s: {'MET' if ok else 'NOT MET'} ({st[1]:.2f} s)")
    if "trap" in rows:
        t = rows["trap"]
        print()
        print(f"3. Relay trap: one smarthost holds its RCPT reply {hold} s for local parts slow*; 5 such messages")
        print("   queued first, then 40 ordinary ones: seconds until the relay has accepted the 40")
        print(f"   {'contender':<10} {'secs':>7}  {'runs (s)':<24} {'conns':>6}  notes")
        for w, runs in t.items():
            status, med, secs, conns, notes = summary(runs)
            if status in ("FAILED", "SKIPPED"):
                failed |= status == "FAILED"
                print(f"   {w:<10} {status}: {'; '.join(notes)}")
                continue
            mark = ">" if status == "CAPPED" else ""
            print(f"   {w:<10} {mark + format(med, '.2f'):>7}  {fmt_runs(secs):<24} {fmt_n(conns):>6}  {' | '.join(notes)}")
        st = summary(t["spoolmail"]) if "spoolmail" in t else None
        if st and st[0] != "FAILED":
            ok = st[0] == "ok" and st[1] < 5
            failed |= not ok
            print(f"   spoolmail's ordinary mail not held by the stuck transactions (under 5 s): {'MET' if ok else 'NOT MET'}")
    sys.exit(1 if failed else 0)


def main(argv):
    cmd = argv[0]
    if cmd == "gen":
        gen(argv[1], int(argv[2]), int(argv[3]), argv[4:])
    elif cmd == "submit":
        assert argv[3] == "--"
        submit(argv[1], int(argv[2]), argv[4:])
    elif cmd == "relay":
        asyncio.run(serve("relay", argv[1], argv[2], float(argv[3]), argv[4].lower()))
    elif cmd == "tarpit":
        asyncio.run(serve("tarpit", argv[1], argv[2]))
    elif cmd == "tls-sink":
        workers = int(argv[7]) if len(argv) > 7 and argv[6] == "--workers" else 2
        tls_sink(argv[1], argv[2], argv[3], argv[4], argv[5], workers)
    elif cmd == "tls-blast":
        tls_blast(argv[1], argv[2], int(argv[3]), int(argv[4]))
    elif cmd == "timeit":
        counts, key, target, timeout = argv[1], argv[2], int(argv[3]), float(argv[4])
        rest = argv[5:]
        wait_cmd, kill_cmd = 60.0, False
        while rest[0] != "--":
            if rest[0] == "--wait-cmd":
                wait_cmd = float(rest[1])
                rest = rest[2:]
            elif rest[0] == "--kill-cmd":
                kill_cmd = True
                rest = rest[1:]
            else:
                sys.exit(f"timeit: unknown option {rest[0]}")
        timeit(counts, key, target, timeout, wait_cmd, kill_cmd, rest[1:])
    elif cmd == "counts":
        print(" ".join(str(v) for v in read_counts(argv[1], argv[2:])))
    elif cmd == "verify-dump":
        verify_dump(argv[1], int(argv[2]), int(argv[3]))
    elif cmd == "verify-seqs":
        verify_seqs(argv[1], int(argv[2]), int(argv[3]))
    elif cmd == "report":
        report(argv[1], int(argv[2]), int(argv[3]))
    elif cmd == "ready":
        ready(argv[1], float(argv[2]))
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main(sys.argv[1:])
