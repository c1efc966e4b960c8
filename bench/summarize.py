#!/usr/bin/env python3
"""Print how each backend compares with a baseline backend in tileflash-bench CSVs.

usage: summarize.py RESULTS.csv [MORE.csv ...] --baseline cublas-standard [--baseline cudnn]

For every point (dtype, shape, causal, direction) measured by both, prints the
backend's TFLOP/s, the baseline's, the speed ratio and the ratio of extra memory.
Lines starting with '#' (header comments of recorded runs) are skipped.
"""
import argparse
import math
import sys

from results_csv import number, read_rows

KEY = ("dtype", "batch", "heads_q", "heads_kv", "seq_q", "seq_k", "head_dim", "causal", "direction")


def human_bytes(n):
    if math.isnan(n) or n < 0:
        return "-"
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if n < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return "-"


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("csv", nargs="+")
    parser.add_argument("--baseline", action="append", required=True, help="backend to compare against (repeatable)")
    args = parser.parse_args()

    rows = read_rows(args.csv)
    by_key = {}
    for row in rows:
        by_key.setdefault(tuple(row[k] for k in KEY), {})[row["backend"]] = row
    backends = sorted({r["backend"] for r in rows} - set(args.baseline))
    if not backends:
        print("summarize: no backend besides the baseline(s) in the results", file=sys.stderr)
        return 1

    header = f"{'backend':<16} {'vs':<16} {'dtype':<5} {'b':>4} {'h':>4} {'seq':>7} {'d':>4} {'causal':>6} {'dir':<7} " \
             f"{'TFLOP/s':>9} {'base':>9} {'speedup':>8} {'extra mem':>11} {'base mem':>11}"
    print(header)
    for baseline in args.baseline:
        for backend in backends:
            for key, entry in by_key.items():
                if backend not in entry or baseline not in entry:
                    continue
                mine, base = entry[backend], entry[baseline]
                t_mine, t_base = number(mine["tflops"]), number(base["tflops"])
                speedup = t_mine / t_base if t_base > 0 else math.nan
                print(f"{backend:<16} {baseline:<16} {mine['dtype']:<5} {mine['batch']:>4} {mine['heads_q']:>4} "
                      f"{mine['seq_q']:>7} {mine['head_dim']:>4} {mine['causal']:>6} {mine['direction']:<7} "
                      f"{t_mine:>9.3f} {t_base:>9.3f} {speedup:>7.2f}x "
                      f"{human_bytes(number(mine['peak_bytes'])):>11} {human_bytes(number(base['peak_bytes'])):>11}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
