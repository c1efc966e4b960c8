#!/usr/bin/env python3
"""Summary of an A/B call: each variant's timings (tileflash-bench CSVs named
<dir>/ab-<label>-<round>.csv), cuDNN's (<dir>/ab-cudnn.csv) and SDPA flash's (<dir>/ab-fa2.csv)
when present. Writes OUT_CSV (every round, the ratios of each variant's best round to BASE's,
to cuDNN and to SDPA flash) and prints the table.
Usage: ab_summary.py OUT_CSV BASE LABEL... (environment AB_DIR, default /tmp)"""
import csv, glob, os, sys
path, base, labels = sys.argv[1], sys.argv[2], sys.argv[3:]
directory = os.environ.get("AB_DIR", "/tmp")
rows = {}
def load(file, label):
    for r in csv.DictReader(l for l in open(file) if not l.startswith("#")):
        causal = int(r["causal"] in ("1", "True", "true"))
        key = (r["direction"], int(r["head_dim"]), causal, int(r["seq_q"]))
        rows.setdefault(key, {}).setdefault(label, []).append(float(r["tflops"]))
for label in labels:
    for file in sorted(glob.glob(f"{directory}/ab-{label}-*.csv")):
        load(file, label)
for extra in ("cudnn", "fa2"):
    if os.path.exists(f"{directory}/ab-{extra}.csv"):
        load(f"{directory}/ab-{extra}.csv", extra)
nan = float("nan")
others = [l for l in labels if l != base]
header = ["direction", "head_dim", "causal", "seq"] + [f"{l}_rounds" for l in labels] + ["cudnn", "fa2"]
header += [f"{l}_over_{base}" for l in others] + [f"{l}_over_cudnn" for l in labels] + [f"{l}_over_fa2" for l in labels]
with open(path, "w") as f:
    f.write(",".join(header) + "\n")
    print(" ".join(header[:4]), " ".join(f"{l:>9}" for l in labels), "cudnn", " ".join(f"{l}/{base}" for l in others),
          " ".join(f"{l}/cudnn" for l in labels))
    for k in sorted(rows):
        t = rows[k]
        best = {l: max(t.get(l, [nan])) for l in labels}
        c, fa = t.get("cudnn", [nan])[0], t.get("fa2", [nan])[0]
        cols = [*map(str, k)] + ["/".join(f"{x:.1f}" for x in t.get(l, [])) for l in labels] + [f"{c:.1f}", f"{fa:.1f}"]
        cols += [f"{best[l] / best.get(base, nan):.4f}" for l in others]
        cols += [f"{best[l] / c:.4f}" for l in labels] + [f"{best[l] / fa:.4f}" for l in labels]
        f.write(",".join(cols) + "\n")
        print(f"{k[0]} {k[1]:3} {k[2]} {k[3]:5}", " ".join(f"{best[l]:9.1f}" for l in labels), f"{c:6.1f}",
              " ".join(f"{best[l] / best.get(base, nan):8.3f}" for l in others),
              " ".join(f"{best[l] / c:8.3f}" for l in labels))
