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

    if "throughput" in rows:
        t = rows["throughput"]
        print()
        print(f"1. Queue run: {count} queued 2048-byte messages to smtp-sink on 127.0.0.1, from the start")
        print("   of the flush until the sink counted them all (every run verified: count, dump, empty queue)")
        print(f"   {'contender':<10} {'msgs/s':>8} {'secs':>7}  {'runs (s)':<24} {'conns':>6} {'rate vs postfix':>16}")
        res = {w: summary(r) for w, r in t.items()}
        pf = res.get("postfix")
        pf_rate = count / pf[1] if pf and pf[0] == "ok" else None
        for w, (status, med, secs, conns, notes) in res.items():
            if status != "ok":
                failed |= status == "FAILED"
                print(f"   {w:<10} {status}: {'; '.join(notes)}")
                continue
            rate = count / med
            vs = f"{rate / pf_rate:.2f}x" if pf_rate else "-"
            print(f"   {w:<10} {rate:>8.0f} {med:>7.2f}  {fmt_runs(secs):<24} {fmt_n(conns):>6} {vs:>16}")
        sm = res.get("spoolmail")
        if sm and sm[0] == "ok" and pf_rate:
            ratio = (count / sm[1]) / pf_rate
            ok1 = ratio >= 1.5
            ok2 = sm[3] is not None and pf[3] is not None and sm[3] <= pf[3]
            failed |= not (ok1 and ok2)
            print(f"   goal: spoolmail >= 1.5x Postfix's rate: {'MET' if ok1 else 'NOT MET'} ({ratio:.2f}x);"
                  f" connections <= Postfix's: {'MET' if ok2 else 'NOT MET'} ({fmt_n(sm[3])} vs {fmt_n(pf[3])})")
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
    elif cmd == "report":
        report(argv[1], int(argv[2]), int(argv[3]))
    elif cmd == "ready":
        ready(argv[1], float(argv[2]))
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main(sys.argv[1:])
