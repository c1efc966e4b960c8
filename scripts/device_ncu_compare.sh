#!/usr/bin/env bash
# Nsight Compute side by side on the lent GPU machine, one launch per kernel (clocks left
# alone): tileflash's sm90 kernels, cuDNN's fused attention (tileflash-bench's cudnn
# backend), and tileflash's Ampere-class kernels forced beside PyTorch SDPA flash (FA2).
# Uses a tileflash-bench built here by scripts/ab_build_prebuilt.sh (.carry/abbin/<LABEL>.gz,
# default old). Device tool: carry [".carry/abbin"], command
# `cp scripts/device_ncu_compare.sh .carry/abbin/ && bash .carry/abbin/device_ncu_compare.sh`
# (or run it from the tree: bench/torch_sdpa.py must sit beside it or in bench/).
# Prints one line of metrics per kernel; environment: CASES (sm90, dir:d:causal:seq),
# CUDNN_CASES, FA2_CASES (empty skips a group), EXTRA_METRICS (appended to the metric
# list), SM90_SKIP and SM90_COUNT (the sm90 launches skipped and profiled, default 1 and 1;
# 2 and 2 take a backward's timed main grid and tail pieces). With SOURCE_OUT=<dir> it
# writes each kernel's source page instead (one row per SASS instruction: executed count,
# stall samples) to <dir>/<group>_<case>.csv, for scripts/opcode_compare.py and
# scripts/stall_summary.py.
set -uo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
sdpa=$here/torch_sdpa.py
[ -f "$sdpa" ] || sdpa=$here/../bench/torch_sdpa.py
export LD_LIBRARY_PATH=/usr/local/cuda/lib64:/usr/local/cuda/lib:${LD_LIBRARY_PATH:-}
mkdir -p /tmp/ncu
bench=/tmp/ncu/tileflash-bench
gunzip -c "$here/${LABEL:-old}.gz" > $bench && chmod +x $bench
metrics=gpu__time_duration.sum,sm__inst_executed.sum,sm__pipe_tensor_op_hmma_cycles_active.avg.pct_of_peak_sustained_active,\
smsp__issue_active.avg.pct_of_peak_sustained_active,smsp__inst_executed_pipe_xu.sum,\
l1tex__data_pipe_lsu_wavefronts_mem_shared.sum,l1tex__data_bank_conflicts_pipe_lsu_mem_shared.sum,lts__t_bytes.sum,\
launch__registers_per_thread,launch__grid_size,launch__block_size,launch__shared_mem_per_block_dynamic,\
smsp__warps_eligible.avg.per_cycle_active,smsp__inst_executed_op_ldsm.sum,\
smsp__average_warps_issue_stalled_long_scoreboard_per_issue_active.ratio,\
smsp__average_warps_issue_stalled_short_scoreboard_per_issue_active.ratio,\
smsp__average_warps_issue_stalled_wait_per_issue_active.ratio,smsp__average_warps_issue_stalled_barrier_per_issue_active.ratio,\
smsp__average_warps_issue_stalled_math_pipe_throttle_per_issue_active.ratio,smsp__average_warps_issue_stalled_mio_throttle_per_issue_active.ratio${EXTRA_METRICS:+,$EXTRA_METRICS}
summary() {
  python3 - "$@" <<'PY'
import csv, sys
label, path = sys.argv[1], sys.argv[2]
kernels = {}
for r in csv.DictReader(l for l in open(path) if l.startswith('"')):
    kernels.setdefault((r["ID"], r["Kernel Name"]), {})[r["Metric Name"]] = r["Metric Value"]
if not kernels:
    print(f"== {label}: no kernel profiled ({path})")
for (i, name), m in kernels.items():
    short = lambda k: k.split('.')[0].split('__')[-1].replace('average_warps_issue_stalled_', 'stall_').replace('_per_issue_active', '')
    print(f"== {label} [{i}] {name[:140]}\n   " + "  ".join(f"{short(k)}={v}" for k, v in sorted(m.items())))
PY
}
# profile LABEL FILE KERNEL SKIP COUNT COMMAND...: metrics summary, or the source page under SOURCE_OUT.
profile() {
  local label=$1 file=$2 kernel=$3 skip=$4 count=$5; shift 5
  if [ -n "${SOURCE_OUT:-}" ]; then
    mkdir -p "$SOURCE_OUT"
    timeout 200 ncu --clock-control none --kernel-name-base demangled -k "$kernel" -s "$skip" -c 1 \
      --section SourceCounters -f -o /tmp/ncu/$file "$@" > /tmp/ncu/$file.log 2>&1
    ncu -i /tmp/ncu/$file.ncu-rep --page source --csv --print-source sass > "$SOURCE_OUT/$file.csv" 2> /dev/null
    echo "== $label: $(wc -l < "$SOURCE_OUT/$file.csv") SASS rows -> $file.csv"
  else
    timeout 120 ncu --clock-control none --kernel-name-base demangled -k "$kernel" -s "$skip" -c "$count" --csv \
      --metrics $metrics "$@" > /tmp/ncu/$file.csv 2> /dev/null
    summary "$label" /tmp/ncu/$file.csv
  fi
}
shape() { IFS=: read -r dir d causal seq <<< "$1"; args=(--dtype bf16 --head-dim "$d" --hidden 2048 --tokens 16384 --seq "$seq" --causal "$causal" --direction "$dir" --reps 1 --warmup 1); }
for case in ${CASES-fwd:64:0:2048 fwd:64:0:8192 fwd:128:0:2048 bwd:128:0:8192 bwd:64:0:8192}; do
  shape "$case"
  kernel=$([ "$dir" = bwd ] && echo regex:sm90::backward_kernel || echo regex:sm90::forward_kernel)
  # A backward's last round may run as a second launch (tail pieces), so the defaults
  # (skip the warm-up's first launch) may land on the warm-up's pieces.
  profile "tileflash sm90 $case" "sm90_${case//:/_}" $kernel "${SM90_SKIP:-1}" "${SM90_COUNT:-1}" $bench --backends cuda "${args[@]}"
done
for case in ${CUDNN_CASES-fwd:64:0:2048 fwd:128:0:2048 bwd:128:0:8192}; do
  shape "$case"
  profile "cudnn $case" "cudnn_${case//:/_}" regex:$([ "$dir" = bwd ] && echo bprop || echo fprop) 0 1 $bench --backends cudnn "${args[@]}"
done
for case in ${FA2_CASES-fwd:256:0:8192 bwd:128:0:8192}; do
  shape "$case"
  if [ "$dir" = bwd ]; then ours=regex:backward_main_kernel; fa2=regex:flash_bwd_dq_dk_dv; else ours=regex:sm80::forward_kernel; fa2=regex:flash_fwd_kernel; fi
  TILEFLASH_FORCE_SM80=1 profile "tileflash sm80 forced $case" "sm80_${case//:/_}" $ours 1 1 $bench --backends cuda "${args[@]}"
  profile "SDPA flash (FA2) $case" "fa2_${case//:/_}" $fa2 1 1 python3 "$sdpa" --backends sdpa-flash --check 0 "${args[@]}"
done
