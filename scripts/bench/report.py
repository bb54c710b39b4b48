#!/usr/bin/env python3
"""Summarises the harness's timings: median, p10, p90 per contender, the
ratios of each median to the floor's and to spoolmail's, and the peak RSS.

Usage: report.py TIMINGS LANDED
TIMINGS: the harness's output (NAME ROUND NANOSECONDS STATUS CPU_NANOSECONDS
MAXRSS_KB per line; ROUND -1 for warm-up runs). The `cpu` column is the
median user + system CPU time, which disk contention does not inflate; `rss`
the median of each run's peak resident set (wait4's ru_maxrss: the largest
process of the contender's tree). LANDED: NAME EXPECTED FOUND [NOTE...] per
line, the messages counted in each contender's queue after the runs; a
contender whose count is short, or one of whose runs exited non-zero, is
FAILED, not timed; EXPECTED -1 marks a contender that was skipped, NOTE
saying why. Exits 1 when a contender failed.

Also imported by sizes.py (summarise)."""
import collections
import statistics
import sys

Stats = collections.namedtuple("Stats", "median p10 p90 runs landed cpu rss")


def summarise(timings, landed_path):
    """(order, stats, failed, skipped): Stats per contender that passed,
    why for those that failed or were skipped."""
    order, times, cpus, rsss, bad = [], collections.defaultdict(list), collections.defaultdict(list), collections.defaultdict(list), collections.Counter()
    for line in open(timings):
        fields = line.rstrip("\n").split("\t")
        name, rnd, ns, status, cpu = fields[:5]
        if name not in order:
            order.append(name)
        if int(status) != 0:
            bad[name] += 1
        elif int(rnd) >= 0:
            times[name].append(int(ns) / 1e6)
            cpus[name].append(int(cpu) / 1e6)
            if len(fields) > 5:
                rsss[name].append(int(fields[5]) / 1024)
    landed = {}
    for line in open(landed_path):
        parts = line.split(None, 3)
        landed[parts[0]] = (int(parts[1]), int(parts[2]), parts[3].strip() if len(parts) > 3 else "")
    for name in landed:
        if name not in order:
            order.append(name)

    stats, failed, skipped = {}, {}, {}
    for name in order:
        expected, found, note = landed.get(name, (0, -1, "not counted"))
        if expected < 0:
            skipped[name] = note
        elif bad[name]:
            failed[name] = f"{bad[name]} run(s) exited non-zero (see {name}.err)"
        elif found != expected:
            failed[name] = f"{found} of {expected} messages landed {note}".strip()
        elif not times[name]:
            failed[name] = "no timed runs"
        else:
            v = sorted(times[name])
            deciles = statistics.quantiles(v, n=10, method="inclusive") if len(v) > 1 else [v[0]] * 9
            rss = statistics.median(rsss[name]) if rsss[name] else float("nan")
            stats[name] = Stats(statistics.median(v), deciles[0], deciles[8], len(v), found, statistics.median(cpus[name]), rss)
    return order, stats, failed, skipped


def ratio(x, base):
    return f"{x / base:6.2f}x" if base else "    n/a"


def main():
    order, stats, failed, skipped = summarise(sys.argv[1], sys.argv[2])
    floor = stats["floor"].median if "floor" in stats else None
    spool = stats["spoolmail"].median if "spoolmail" in stats else None

    print(f"{'contender':<12} {'runs':>5} {'landed':>7} {'median':>8} {'p10':>8} {'p90':>8}  {'/floor':>7} {'/spoolmail':>10}  {'cpu':>6}  {'rss':>6}")
    print(f"{'':<12} {'':>5} {'':>7} {'ms':>8} {'ms':>8} {'ms':>8}  {'':>7} {'':>10}  {'ms':>6}  {'MiB':>6}")
    for name in order:
        if name in stats:
            s = stats[name]
            print(f"{name:<12} {s.runs:>5} {s.landed:>7} {s.median:8.3f} {s.p10:8.3f} {s.p90:8.3f}  {ratio(s.median, floor):>7} {ratio(s.median, spool):>10}  {s.cpu:6.2f}  {s.rss:6.2f}")
        elif name in skipped:
            print(f"{name:<12} SKIP: {skipped[name]}")
        else:
            print(f"{name:<12} FAILED: {failed[name]}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
