#!/usr/bin/env bash
# Peak extra memory against sequence length: what each backend allocates beyond its
# inputs and outputs (see bench/README.md for how each measures it).
#   gpu: tileflash `cuda` against materialised `cublas-standard`, bf16, d = 128,
#        16 heads, batch 1, seq 1k ... 128k, forward and backward. Standard attention
#        runs out of memory long before 128k; those points are recorded with the
#        bytes it would have needed and no time.
#   cpu: tileflash `cpu` against the materialised `reference`, fp32, d = 64, 4 heads,
#        batch 1, seq 256 ... 4096 (the reference is slow), forward and backward.
#        Each point runs in a process of its own: the cpu backend recycles its
#        workspace across calls (src/cpu/workspace.cpp), so within one process the
#        allocation counter would only see the pool grow.
# usage: bench/run_memory_sweep.sh [gpu|cpu]   (default: gpu when nvidia-smi finds one)
# Writes bench/results/<device>-<date>-memory.csv and a .png plot (copied to $OUT when set).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
cd "$bench_root"

mode="${1:-}"
if [[ -z "$mode" ]]; then
  if nvidia-smi -L 2>/dev/null | grep -q '^GPU'; then mode=gpu; else mode=cpu; fi
fi
results="${RESULTS_DIR:-bench/results}"
mkdir -p "$results"
scratch="$(mktemp -d)"

if [[ "$mode" == gpu ]]; then
  "$bench_root/scripts/fetch_third_party.sh"
  build_dir="${TILEFLASH_BUILD_DIR:-build-grid}"
  bench_build "$build_dir" ON -DTILEFLASH_CUDA_ARCHS="${TILEFLASH_CUDA_ARCHS:-90}" \
    -DTILEFLASH_HEAD_DIMS="${TILEFLASH_HEAD_DIMS:-64;128;256}"
  device="$(bench_gpu_name)"
  args=(--backends cuda,cublas-standard --dtype bf16 --head-dim 128 --heads 16 --batch 1
        --seq "${SWEEP_SEQ:-1024,2048,4096,8192,16384,32768,65536,131072}" --direction fwd,bwd
        --reps 3 --warmup 1 --check 0)
else
  build_dir="${TILEFLASH_BUILD_DIR:-build-bench}"
  bench_build "$build_dir" OFF
  device="$(bench_cpu_name)"
  args=(--dtype fp32 --head-dim 64 --heads 4 --batch 1 --reps 1 --warmup 0 --check 0)
fi
out="$results/$(bench_slug "$device")-$(date -u +%Y-%m-%d)-memory.csv"
status=0
if [[ "$mode" == gpu ]]; then
  "$build_dir/bench/tileflash-bench" "${args[@]}" --csv "$scratch/memory.csv" || status=1
  parts=("$scratch/memory.csv")
else
  parts=()
  IFS=, read -r -a seqs <<<"${SWEEP_SEQ:-256,512,1024,2048,4096}"
  for seq in "${seqs[@]}"; do
    for direction in fwd bwd; do
      for backend in cpu reference; do
        part="$scratch/$backend-$seq-$direction.csv"
        "$build_dir/bench/tileflash-bench" "${args[@]}" --backends "$backend" --seq "$seq" --direction "$direction" \
          --csv "$part" | tail -n +2 || status=1
        parts+=("$part")
      done
    done
  done
fi
bench_merge "$out" "$device" "bench/run_memory_sweep.sh $mode (tileflash-bench ${args[*]})" "${parts[@]}"
echo "memory sweep: $out"
png="$(bench_plot memory "$out")"
bench_export "$out" ${png:+"$png"}
exit "$status"
