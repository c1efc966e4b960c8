#!/usr/bin/env bash
# A/B call on the lent GPU machine with tileflash-bench binaries built here (no build on the
# device: a call then costs only its timings). Each variant is a gzipped binary in
# .carry/abbin/<label>.gz, made by scripts/ab_build_prebuilt.sh; the variants are timed
# alternately ROUNDS times (default 2), cuDNN once (and SDPA flash with FA2=1) in the same call.
# Writes $OUT/ab.csv (each variant's best round, its ratio to BASE and to cuDNN) and prints
# the table.
# Device tool: carry [".carry/abbin"], command `bash .carry/abbin/device_ab_prebuilt.sh`.
# With .carry/abbin/tests/tileflash_tests.gz (TESTS=1 there) its tests of TF (default
# CudaForward*:CudaBackward*) run first, to $OUT/tests.log.
# Environment: GD, GS, GDIR, REPS, CAUSAL, HIDDEN (the grid: head dims, seqs, fwd|bwd|fwd,bwd,
# repetitions, both|0|1, hidden size, default 2048: heads = hidden / head dim), BASE (the label the others are divided by, default old), ROUNDS, FA2,
# FORCE_SM80 (1 times every variant on the Ampere-class kernels), LABELS (a subset of the
# variants, space-separated; a second run in the same call reuses the unpacked binaries),
# TESTS (0 skips the tests).
set -uo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
out=${OUT:-/tmp/ab-prebuilt}
mkdir -p "$out" /tmp/abbin
start=$(date +%s)
stamp() { echo "== $(($(date +%s) - start)) s: $*"; }
cat "$here/REVISIONS" 2>/dev/null | tee "$out/revisions.txt"
nvidia-smi --query-gpu=name,clocks.sm,clocks.max.sm --format=csv,noheader | tee -a "$out/revisions.txt"
# The binaries were linked here with RUNPATH /usr/local/cuda/lib; the machine's CUDA may keep
# its libraries under lib64 or in the system's paths.
export LD_LIBRARY_PATH=/usr/local/cuda/lib64:/usr/local/cuda/lib:${LD_LIBRARY_PATH:-}
if [ -f "$here/tests/tileflash_tests.gz" ] && [ "${TESTS:-1}" = 1 ]; then
  gunzip -c "$here/tests/tileflash_tests.gz" > /tmp/abbin/tileflash_tests && chmod +x /tmp/abbin/tileflash_tests
  timeout "${TEST_TIMEOUT:-300}" /tmp/abbin/tileflash_tests --gtest_filter="${TF:-CudaForward*:CudaBackward*}" \
    > "$out/tests.log" 2>&1
  echo "tests rc=$?"
  grep -E "^\[  (FAILED|PASSED|SKIPPED) |Failure|Expected|Which is" "$out/tests.log" | head -30
  stamp "tests"
fi
labels=()
for archive in "$here"/*.gz; do
  label=$(basename "$archive" .gz)
  [ -n "${LABELS:-}" ] && [[ " $LABELS " != *" $label "* ]] && continue
  [ -x "/tmp/abbin/$label" ] || { gunzip -c "$archive" > "/tmp/abbin/$label" && chmod +x "/tmp/abbin/$label"; }
  labels+=("$label")
done
[ ${#labels[@]} -gt 0 ] || { echo "no binaries in $here"; exit 1; }
grid=(--dtype bf16 --head-dim "${GD:-64,128,256}" --hidden "${HIDDEN:-2048}" --tokens 16384 --seq "${GS:-1024,2048,4096,8192,16384}"
      --causal "${CAUSAL:-both}" --direction "${GDIR:-fwd}" --reps "${REPS:-15}" --warmup 5)
rm -f /tmp/ab-*.csv  # rounds of an earlier call would join the summary
[ "${FORCE_SM80:-0}" = 1 ] && export TILEFLASH_FORCE_SM80=1
for round in $(seq 1 "${ROUNDS:-2}"); do
  for label in "${labels[@]}"; do
    timeout "${RUN_TIMEOUT:-120}" "/tmp/abbin/$label" --backends cuda "${grid[@]}" --csv "/tmp/ab-$label-$round.csv" > "/tmp/ab-$label-$round.log" 2>&1 ||
      { echo "$label round $round failed:"; tail -5 "/tmp/ab-$label-$round.log"; }
  done
  stamp "round $round"
done
unset TILEFLASH_FORCE_SM80
timeout "${RUN_TIMEOUT:-120}" "/tmp/abbin/${labels[0]}" --backends cudnn "${grid[@]}" --csv /tmp/ab-cudnn.csv > /tmp/ab-cudnn.log 2>&1 ||
  tail -5 /tmp/ab-cudnn.log
if [ "${FA2:-0}" = 1 ]; then
  PYTHONUNBUFFERED=1 python3 "$here/torch_sdpa.py" --backends sdpa-flash "${grid[@]}" --csv /tmp/ab-fa2.csv \
    > /tmp/ab-fa2.log 2>&1 || tail -5 /tmp/ab-fa2.log
fi
stamp "timed"
python3 "$here/ab_summary.py" "$out/ab.csv" "${BASE:-old}" "${labels[@]}"
