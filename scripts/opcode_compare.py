#!/usr/bin/env python3
"""Executed warp instructions by SASS opcode for two or more kernels, side by side, from the
source pages that `SOURCE_OUT=<dir> scripts/device_ncu_compare.sh` writes: where one kernel
spends instructions that another does not.

Usage: scripts/opcode_compare.py A.csv B.csv [...] [--depth N] [--top N]
  --depth: how many dot-separated parts of the opcode to keep (1: HMMA, 2: HMMA.16816; default 1)
"""
import argparse
import collections
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from stall_summary import opcode, read  # noqa: E402


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("csv", nargs="+")
    parser.add_argument("--depth", type=int, default=1)
    parser.add_argument("--top", type=int, default=30)
    args = parser.parse_args()
    counts = []
    for path in args.csv:
        kernel, instructions = read(path)
        by_opcode = collections.Counter()
        for _, sass, _, executed in instructions:
            by_opcode[opcode(sass, args.depth)] += executed
        counts.append(by_opcode)
        print(f"{os.path.basename(path)}: {sum(by_opcode.values()) / 1e6:.1f} M warp instructions, "
              f"{len(instructions)} SASS lines  {kernel[:90]}")
    names = set().union(*counts)
    spread = lambda name: max(c[name] for c in counts) - min(c[name] for c in counts)
    print(f"{'opcode':24s}" + "".join(f"{os.path.basename(p)[:14]:>16s}" for p in args.csv) + "   (M)")
    for name in sorted(names, key=lambda n: -spread(n))[: args.top]:
        print(f"{name:24s}" + "".join(f"{c[name] / 1e6:16.2f}" for c in counts))


if __name__ == "__main__":
    sys.exit(main())
