#!/usr/bin/env python3
"""Summarise a warp-stall CSV from `scripts/device_check.sh stalls` (Nsight Compute's source
page, one row per SASS instruction): the share of samples by stall reason and by opcode, then
the instructions with the most samples and their main reasons.

Usage: scripts/stall_summary.py STALLS.csv [--top N] [--around INDEX[:RADIUS]]
  --around prints the SASS around one instruction index (as listed) with its samples, to see
  what an instruction waits for.
"""
import argparse
import collections
import csv
import sys


def read(path):
    with open(path, newline="") as f:
        rows = list(csv.reader(f))
    # Row 0 names the kernel; row 1 is the header.
    header = rows[1]
    index = {name: i for i, name in enumerate(header)}
    reasons = [h for h in header if h.startswith("stall_") and "Not Issued" not in h]
    instructions = []
    for row in rows[2:]:
        samples = int(row[index["Warp Stall Sampling (All Samples)"]] or 0)
        by_reason = {h[len("stall_"):]: int(row[index[h]] or 0) for h in reasons}
        executed = int(row[index["Instructions Executed"]] or 0)
        instructions.append((samples, row[index["Source"]].strip(), by_reason, executed))
    return rows[0][1] if len(rows[0]) > 1 else "", instructions


def opcode(sass, depth=1):
    """The instruction's opcode without its predicate, to `depth` dot-separated parts."""
    words = sass.split()
    if not words:
        return "?"
    word = words[1] if words[0].startswith("@") and len(words) > 1 else words[0]
    return ".".join(word.split(".")[:depth])


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("csv")
    parser.add_argument("--top", type=int, default=25)
    parser.add_argument("--around", help="INDEX[:RADIUS] (radius 20 by default)")
    args = parser.parse_args()
    kernel, instructions = read(args.csv)
    total = sum(s for s, _, _, _ in instructions) or 1
    print(f"{kernel}\n{total} samples over {len(instructions)} instructions")

    if args.around:
        at, _, radius = args.around.partition(":")
        at, radius = int(at), int(radius or 20)
        for k in range(max(0, at - radius), min(len(instructions), at + radius + 1)):
            samples, sass, _, executed = instructions[k]
            print(f"{k:6d} {samples:8d} {executed:10d}  {sass}")
        return

    reasons = collections.Counter()
    opcodes = collections.Counter()
    for samples, sass, by_reason, _ in instructions:
        reasons.update(by_reason)
        opcodes[opcode(sass)] += samples
    print("by reason: " + ", ".join(f"{r} {100 * v / total:.1f}%" for r, v in reasons.most_common(10)))
    print("by opcode: " + ", ".join(f"{o} {100 * v / total:.1f}%" for o, v in opcodes.most_common(12)))
    ranked = sorted(range(len(instructions)), key=lambda k: -instructions[k][0])[: args.top]
    for k in ranked:
        samples, sass, by_reason, _ = instructions[k]
        main_reasons = ", ".join(f"{r}={v}" for r, v in sorted(by_reason.items(), key=lambda x: -x[1])[:3] if v)
        print(f"{100 * samples / total:6.2f}%  #{k:<6d} {sass[:64]:64s} {main_reasons}")


if __name__ == "__main__":
    sys.exit(main())
