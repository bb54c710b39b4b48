#!/usr/bin/env python3
"""One table of enqueue cost against message size: for each contender and
each size, the median time, its ratio to the floor's median of the same run
(the same harness invocation, contenders interleaved), and the median peak
RSS, so that a cost that grows faster than the message shows.

Usage: sizes.py LABEL TIMINGS LANDED [LABEL TIMINGS LANDED]...
(the files as report.py takes them). Exits 1 when a contender failed at
some size."""
import sys

from report import summarise


def main():
    args = sys.argv[1:]
    runs = [args[i:i + 3] for i in range(0, len(args), 3)]
    tables, order, status = [], [], 0
    for label, timings, landed in runs:
        names, stats, failed, skipped = summarise(timings, landed)
        tables.append((label, stats, failed, skipped))
        order += [n for n in names if n not in order and n != "noop"]
        status |= bool(failed)
    width = 26
    print(f"{'':<12}" + "".join(f" {label:>{width}}" for label, *_ in tables))
    head = f"{'median':>10} {'/floor':>6} {'peak RSS':>9}"
    print(f"{'contender':<12}" + "".join(f" {head:>{width}}" for _ in tables))
    for name in order:
        cells = []
        for _, stats, failed, skipped in tables:
            if name in stats:
                s = stats[name]
                floor = stats["floor"].median if "floor" in stats else None
                r = f"{s.median / floor:5.2f}x" if floor else f"{'n/a':>6}"
                cells.append(f"{fmt_time(s.median)} {r} {s.rss:5.2f} MiB")
            elif name in skipped:
                cells.append("skipped")
            else:
                cells.append("FAILED" if name in failed else "")
        print(f"{name:<12}" + "".join(f" {c:>{width}}" for c in cells))
    return status


def fmt_time(ms):
    return f"{ms:7.2f} ms" if ms < 1000 else f"{ms / 1000:8.3f} s"


if __name__ == "__main__":
    sys.exit(main())
