#!/usr/bin/env bash
# One A/B call on the lent GPU machine, from a tree made by scripts/ab_prepare.sh: builds
# old/'s tileflash-bench while the new tree's GPU tests run (scripts/device_check.sh, both
# kernel paths), then times new and old alternately, twice each, with cuDNN and (with FA2=1)
# PyTorch SDPA flash once in the same call, and only then runs the STEPS (the sanitizers
# take 2-3 minutes: run first, they pushed a call with four head dims past its 600 s and
# its timings were lost). Writes $OUT/ab.csv (new/old, new/cudnn, ...) as soon as the
# timings exist, tests.log and the sanitizer logs, and prints the table and
# device_check.sh's sass step for the new build (registers, spills, ptxas's C751x wgmma
# messages).
# Environment: HD (head-dim tiles built, default "64;96;128;256"), TF (test filter, default
# CudaForward*:CudaBackward*; "-" skips the tests), STEPS (more device_check.sh steps, e.g.
# sanitizer), GD, GS, GDIR, REPS (the timed grid: head dims, seqs, fwd|bwd|fwd,bwd,
# repetitions), FA2 (1 adds SDPA flash), FORCE_SM80 (1 times new and old on the Ampere-class
# kernels, TILEFLASH_FORCE_SM80=1).
set -uo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.." || exit 1
start=$(date +%s)
stamp() { echo "== $(($(date +%s) - start)) s: $*"; }
cat AB_REVISIONS 2>/dev/null
dims=${HD:-64;96;128;256}
(cmake -S old -B /tmp/ab-old -G Ninja -DCMAKE_BUILD_TYPE=Release -DTILEFLASH_CUDA=ON -DTILEFLASH_CUDA_ARCHS=90 \
   "-DTILEFLASH_HEAD_DIMS=$dims" -DTILEFLASH_BUILD_TESTS=OFF > /tmp/ab-old.log 2>&1 &&
 ninja -C /tmp/ab-old -j6 tileflash-bench >> /tmp/ab-old.log 2>&1 || { echo "OLD BUILD FAILED"; tail -30 /tmp/ab-old.log; }) &
out=$OUT
# sass: registers, spills and ptxas's wgmma messages of the new build.
steps=(sass)
[ "${TF:-}" = "-" ] || steps+=(tests)
OUT=/tmp/ab-check TILEFLASH_HEAD_DIMS="$dims" TEST_FILTER="${TF:-CudaForward*:CudaBackward*}" \
  bash scripts/device_check.sh "${steps[@]}"
cp /tmp/ab-check/tests.log "$out/" 2>/dev/null
stamp "new built and tested"
wait
stamp "old built"
grid=(--dtype bf16 --head-dim "${GD:-64,128,256}" --hidden 2048 --tokens 16384 --seq "${GS:-1024,2048,4096,8192,16384}"
      --causal both --direction "${GDIR:-fwd}" --reps "${REPS:-15}" --warmup 5)
[ "${FORCE_SM80:-0}" = 1 ] && export TILEFLASH_FORCE_SM80=1
for rep in 1 2; do
  build-device/bench/tileflash-bench --backends cuda "${grid[@]}" --csv /tmp/ab-new$rep.csv > /tmp/ab-new$rep.log 2>&1 ||
    tail -5 /tmp/ab-new$rep.log
  /tmp/ab-old/bench/tileflash-bench --backends cuda "${grid[@]}" --csv /tmp/ab-old$rep.csv > /tmp/ab-old$rep.log 2>&1 ||
    tail -5 /tmp/ab-old$rep.log
done
unset TILEFLASH_FORCE_SM80
build-device/bench/tileflash-bench --backends cudnn "${grid[@]}" --csv /tmp/ab-cudnn.csv > /tmp/ab-cudnn.log 2>&1 ||
  tail -5 /tmp/ab-cudnn.log
rm -f /tmp/ab-fa2.csv
if [ "${FA2:-0}" = 1 ]; then
  PYTHONUNBUFFERED=1 python3 bench/torch_sdpa.py --backends sdpa-flash "${grid[@]}" --csv /tmp/ab-fa2.csv \
    > /tmp/ab-fa2.log 2>&1 || tail -5 /tmp/ab-fa2.log
fi
stamp "timed"
python3 - "$out/ab.csv" <<'PY'
import csv, math, os, sys
rows = {}
def load(path, label):
    if not os.path.exists(path):
        return
    for r in csv.DictReader(l for l in open(path) if not l.startswith("#")):
        causal = str(int(r["causal"] in ("1", "True", "true")))
        key = (r["direction"], int(r["head_dim"]), causal, int(r["seq_q"]))
        rows.setdefault(key, {}).setdefault(label, []).append(float(r["tflops"]))
for rep in (1, 2):
    load(f"/tmp/ab-new{rep}.csv", "new")
    load(f"/tmp/ab-old{rep}.csv", "old")
load("/tmp/ab-cudnn.csv", "cudnn")
load("/tmp/ab-fa2.csv", "fa2")
nan = float("nan")
with open(sys.argv[1], "w") as out:
    out.write("direction,head_dim,causal,seq,new1,new2,old1,old2,cudnn,fa2,"
              "new_over_old,new_over_cudnn,old_over_cudnn,new_over_fa2,old_over_fa2\n")
    print("dir d   causal seq    new1   new2   old1   old2  cudnn   fa2  new/old new/cudnn old/cudnn new/fa2")
    for k in sorted(rows):
        t = rows[k]
        new = (t.get("new", []) + [nan, nan])[:2]
        old = (t.get("old", []) + [nan, nan])[:2]
        c, f = t.get("cudnn", [nan])[0], t.get("fa2", [nan])[0]
        n, o = max(new), max(old)
        ratios = [n / o, n / c, o / c, n / f, o / f]
        out.write(",".join(map(str, [*k, *new, *old, c, f])) + "," + ",".join(f"{x:.4f}" for x in ratios) + "\n")
        print(f"{k[0]} {k[1]:3} {k[2]:>6} {k[3]:5} " + " ".join(f"{x:6.0f}" for x in [*new, *old, c, f]) +
              f"  {ratios[0]:6.3f}  {ratios[1]:8.3f}  {ratios[2]:8.3f}  {ratios[3]:6.3f}")
PY
# The extra device_check.sh steps last (the build is incremental by then).
read -ra more <<< "${STEPS:-}"
if [ ${#more[@]} -gt 0 ]; then
  OUT=/tmp/ab-check TILEFLASH_HEAD_DIMS="$dims" bash scripts/device_check.sh "${more[@]}"
  for f in /tmp/ab-check/sanitizer_*.log; do [ -f "$f" ] && tail -30 "$f" > "$out/$(basename "$f")"; done
  stamp "steps: ${more[*]}"
fi
