#!/usr/bin/env bash
# The grid of ../shared/ANCHORS.md on an NVIDIA GPU, in one run: tileflash (`cuda`),
# cuDNN's fused attention (`cudnn`, through cudnn-frontend) and PyTorch SDPA's flash,
# cuDNN and memory-efficient backends. d = 64, 128, 256; causal and not; seq 512 to
# 16384; bf16; forward and backward; batch * seq = 16384 tokens, hidden 2048
# (heads = 2048 / d). Builds tileflash-bench first.
#
# Writes bench/results/<device>-<date>-grid.csv and a .png plot of it (copied with the logs to $OUT
# when that is set, as on the lent GPU machine). Takes about 5-8 minutes on an H200
# including the build with 16 cores.
#
# Environment: TILEFLASH_CUDA_ARCHS (default 90), TILEFLASH_HEAD_DIMS (default
# "64;128;256"), TILEFLASH_JOBS, TILEFLASH_COMMIT (commit id to record where the
# tree has no .git), GRID_SEQ (default 512,...,16384), GRID_HEAD_DIMS, GRID_REPS
# (default 20), GRID_BACKENDS (default cuda,cudnn), GRID_TORCH_BACKENDS (default
# sdpa-flash,sdpa-cudnn,sdpa-efficient), GRID_BENCH_BIN (a tileflash-bench built elsewhere,
# e.g. by scripts/ab_build_prebuilt.sh: no build here).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
cd "$bench_root"

if [ -n "${GRID_BENCH_BIN:-}" ]; then
  bench_bin="$GRID_BENCH_BIN"
else
  "$bench_root/scripts/fetch_third_party.sh"
  build_dir="${TILEFLASH_BUILD_DIR:-build-grid}"
  bench_build "$build_dir" ON -DTILEFLASH_CUDA_ARCHS="${TILEFLASH_CUDA_ARCHS:-90}" \
    -DTILEFLASH_HEAD_DIMS="${TILEFLASH_HEAD_DIMS:-64;128;256}"
  bench_bin="$build_dir/bench/tileflash-bench"
fi

device="$(bench_gpu_name)"
results="${RESULTS_DIR:-bench/results}"
mkdir -p "$results"
out="$results/$(bench_slug "$device")-$(date -u +%Y-%m-%d)-grid.csv"
scratch="$(mktemp -d)"
grid=(--dtype bf16 --head-dim "${GRID_HEAD_DIMS:-64,128,256}" --hidden 2048 --tokens 16384
      --seq "${GRID_SEQ:-512,1024,2048,4096,8192,16384}" --causal both --direction fwd,bwd
      --reps "${GRID_REPS:-20}" --warmup 5)

status=0
"$bench_bin" --backends "${GRID_BACKENDS:-cuda,cudnn}" "${grid[@]}" \
  --csv "$scratch/tileflash.csv" 2> >(tee "$scratch/tileflash.log" >&2) || status=1
PYTHONUNBUFFERED=1 python3 bench/torch_sdpa.py --backends "${GRID_TORCH_BACKENDS:-sdpa-flash,sdpa-cudnn,sdpa-efficient}" \
  "${grid[@]}" --csv "$scratch/torch.csv" 2> >(tee "$scratch/torch.log" >&2) || status=1

bench_merge "$out" "$device" "bench/run_anchor_grid.sh (tileflash-bench and torch_sdpa.py ${grid[*]})" \
  "$scratch/tileflash.csv" "$scratch/torch.csv"
echo "grid: $out"
python3 bench/summarize.py "$out" --baseline sdpa-flash --baseline cudnn || true
png="$(bench_plot throughput "$out")"
bench_export "$out" ${png:+"$png"} "$scratch/tileflash.log" "$scratch/torch.log"
exit "$status"
