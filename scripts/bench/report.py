#!/usr/bin/env python3
"""Summarises the harness's timings: median, p10, p90 per contender and the
ratios of each median to the floor's and to spoolmail's.

Usage: report.py TIMINGS LANDED
TIMINGS: the harness's output (NAME ROUND NANOSECONDS STATUS CPU_NANOSECONDS
per line; ROUND -1 for warm-up runs). The `cpu` column is the median user +
system CPU time, which disk contention does not inflate. LANDED: NAME EXPECTED FOUND [NOTE...] per line, the
messages counted in each contender's queue after the runs; a contender whose
count is short, or one of whose runs exited non-zero, is FAILED, not timed;
EXPECTED -1 marks a contender that was skipped, NOTE saying why.
Exits 1 when a contender failed."""
import collections
import statistics
import sys


def main():
    timings, landed_path = sys.argv[1], sys.argv[2]
    order, times, cpus, bad = [], collections.defaultdict(list), collections.defaultdict(list), collections.Counter()
    for line in open(timings):
        name, rnd, ns, status, cpu = line.split("\t")
        if name not in order:
            order.append(name)
        if int(status) != 0:
            bad[name] += 1
        elif int(rnd) >= 0:
            times[name].append(int(ns) / 1e6)
            cpus[name].append(int(cpu) / 1e6)
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
            deciles = statistics.quantiles(v, n=10, method="inclusive")
            stats[name] = (statistics.median(v), deciles[0], deciles[8], len(v), found, statistics.median(cpus[name]))

    floor = stats.get("floor", (None,))[0]
    spool = stats.get("spoolmail", (None,))[0]

    def ratio(x, base):
        return f"{x / base:6.2f}x" if base else "    n/a"

    print(f"{'contender':<12} {'runs':>5} {'landed':>7} {'median':>8} {'p10':>8} {'p90':>8}  {'/floor':>7} {'/spoolmail':>10}  {'cpu':>6}")
    print(f"{'':<12} {'':>5} {'':>7} {'ms':>8} {'ms':>8} {'ms':>8}  {'':>7} {'':>10}  {'ms':>6}")
    for name in order:
        if name in stats:
            med, p10, p90, n, found, cpu = stats[name]
            print(f"{name:<12} {n:>5} {found:>7} {med:8.3f} {p10:8.3f} {p90:8.3f}  {ratio(med, floor):>7} {ratio(med, spool):>10}  {cpu:6.2f}")
        elif name in skipped:
            print(f"{name:<12} SKIP: {skipped[name]}")
        else:
            print(f"{name:<12} FAILED: {failed[name]}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
