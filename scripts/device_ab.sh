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
rm -f /tmp/ab-*.csv  # rounds of an earlier call would join the summary
[ "${FORCE_SM80:-0}" = 1 ] && export TILEFLASH_FORCE_SM80=1
for rep in 1 2; do
  build-device/bench/tileflash-bench --backends cuda "${grid[@]}" --csv /tmp/ab-new-$rep.csv > /tmp/ab-new-$rep.log 2>&1 ||
    tail -5 /tmp/ab-new-$rep.log
  /tmp/ab-old/bench/tileflash-bench --backends cuda "${grid[@]}" --csv /tmp/ab-old-$rep.csv > /tmp/ab-old-$rep.log 2>&1 ||
    tail -5 /tmp/ab-old-$rep.log
done
unset TILEFLASH_FORCE_SM80
build-device/bench/tileflash-bench --backends cudnn "${grid[@]}" --csv /tmp/ab-cudnn.csv > /tmp/ab-cudnn.log 2>&1 ||
  tail -5 /tmp/ab-cudnn.log
if [ "${FA2:-0}" = 1 ]; then
  PYTHONUNBUFFERED=1 python3 bench/torch_sdpa.py --backends sdpa-flash "${grid[@]}" --csv /tmp/ab-fa2.csv \
    > /tmp/ab-fa2.log 2>&1 || tail -5 /tmp/ab-fa2.log
fi
stamp "timed"
python3 scripts/ab_summary.py "$out/ab.csv" old new old
# The extra device_check.sh steps last (the build is incremental by then).
read -ra more <<< "${STEPS:-}"
if [ ${#more[@]} -gt 0 ]; then
  OUT=/tmp/ab-check TILEFLASH_HEAD_DIMS="$dims" bash scripts/device_check.sh "${more[@]}"
  for f in /tmp/ab-check/sanitizer_*.log; do [ -f "$f" ] && tail -30 "$f" > "$out/$(basename "$f")"; done
  stamp "steps: ${more[*]}"
fi
