#!/usr/bin/env python3
"""Plot tileflash-bench / torch_sdpa.py CSVs (header comments starting with '#' are skipped).

  plot.py throughput RESULTS.csv [...] -o grid.png
      TFLOP/s against sequence length, one line per backend, one panel per
      (head_dim, causal, direction).
  plot.py memory RESULTS.csv [...] -o memory.png
      peak extra memory against sequence length, one line per backend, one panel per
      direction, log-log (symmetric-log near 0, so 0 bytes shows). Points a backend could not run (out of memory: no time,
      peak_bytes = what it would have needed) are drawn as hollow markers.
"""
import argparse
import math
import sys
from collections import defaultdict

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from results_csv import number, read_rows  # noqa: E402


def device_of(rows):
    return ", ".join(sorted({r["device"] for r in rows}))


def plot_throughput(rows, output):
    panels = sorted({(int(r["head_dim"]), r["causal"], r["direction"]) for r in rows},
                    key=lambda p: (p[2], p[0], p[1]))
    columns = min(len(panels), 3)
    lines = math.ceil(len(panels) / columns)
    fig, axes = plt.subplots(lines, columns, figsize=(5.2 * columns, 3.8 * lines), squeeze=False)
    backends = sorted({r["backend"] for r in rows})
    colors = {b: plt.cm.tab10(i % 10) for i, b in enumerate(backends)}
    for ax, (head_dim, causal, direction) in zip(axes.flat, panels):
        series = defaultdict(list)
        for r in rows:
            if (int(r["head_dim"]), r["causal"], r["direction"]) == (head_dim, causal, direction):
                series[r["backend"]].append((int(r["seq_q"]), number(r["tflops"])))
        for backend, points in sorted(series.items()):
            points = sorted(p for p in points if not math.isnan(p[1]))
            if points:
                ax.plot(*zip(*points), marker="o", label=backend, color=colors[backend])
        ax.set_xscale("log", base=2)
        ax.set_title(f"d={head_dim} {'causal' if causal == '1' else 'non-causal'} {direction}")
        ax.set_xlabel("sequence length")
        ax.set_ylabel("TFLOP/s")
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=7)
    for ax in list(axes.flat)[len(panels):]:
        ax.set_visible(False)
    dtypes = ", ".join(sorted({r["dtype"] for r in rows}))
    fig.suptitle(f"attention throughput, {dtypes} — {device_of(rows)}")
    fig.tight_layout()
    fig.savefig(output, dpi=120)


def plot_memory(rows, output):
    directions = sorted({r["direction"] for r in rows})
    fig, axes = plt.subplots(1, len(directions), figsize=(6 * len(directions), 4.2), squeeze=False)
    backends = sorted({r["backend"] for r in rows})
    colors = {b: plt.cm.tab10(i % 10) for i, b in enumerate(backends)}
    for ax, direction in zip(axes.flat, directions):
        for backend in backends:
            ran, failed = [], []
            for r in rows:
                if r["backend"] != backend or r["direction"] != direction:
                    continue
                point = (int(r["seq_q"]), number(r["peak_bytes"]) / 2**20)
                if math.isnan(point[1]) or point[1] < 0:
                    continue
                (failed if math.isnan(number(r["ms_median"])) else ran).append(point)
            if ran:
                ax.plot(*zip(*sorted(ran)), marker="o", label=backend, color=colors[backend])
            if failed:
                ax.plot(*zip(*sorted(failed)), marker="o", linestyle="none", markerfacecolor="none",
                        color=colors[backend], label=f"{backend} (out of memory: would need)")
        ax.set_xscale("log", base=2)
        # symlog keeps a backend that allocates nothing (0 bytes) on the chart.
        ax.set_yscale("symlog", linthresh=0.01)
        ax.set_ylim(bottom=0)
        ax.set_title(f"peak extra memory, {direction}")
        ax.set_xlabel("sequence length")
        ax.set_ylabel("MiB")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=7)
    first = rows[0]
    fig.suptitle(f"{first['dtype']}, d={first['head_dim']}, heads={first['heads_q']}, batch={first['batch']} — "
                 f"{device_of(rows)}")
    fig.tight_layout()
    fig.savefig(output, dpi=120)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("kind", choices=["throughput", "memory"])
    parser.add_argument("csv", nargs="+")
    parser.add_argument("-o", "--output", required=True, help="PNG file to write")
    args = parser.parse_args()
    rows = read_rows(args.csv)
    if not rows:
        print("plot: no rows in the given CSVs", file=sys.stderr)
        return 1
    (plot_throughput if args.kind == "throughput" else plot_memory)(rows, args.output)
    print(f"plot: {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
