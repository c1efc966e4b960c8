#!/usr/bin/env bash
# One call on the lent GPU machine for the CUDA kernels: build for sm_90 (the
# Ampere-class kernels and the Hopper sm_90a ones), then the steps asked for. Logs go to
# $OUT (the device tool's folder); the last lines printed are short tables.
#   sass       registers, spills, ptxas's wgmma serialisation messages and the Hopper instructions
#              (HGMMA, UTMALDG, UBLKRED) of the sm90 kernels
#   tests      the GPU tests of TEST_FILTER (default CudaForward*:CudaBackward*; both paths:
#              the selector's pick and sm80 forced)
#   timing     tileflash-bench on the ANCHORS grid, cuda (auto: sm90), cuda with sm80 forced
#              and cudnn in one run; GRID_SEQ / GRID_HEAD_DIMS narrow it, GRID_DIRECTION
#              (default fwd) picks fwd, bwd or fwd,bwd
#   profile    Nsight Compute on one sm90 launch per PROFILE_CASES entry d:causal:seq
#              (default "128:1:2048 64:0:8192"); PROFILE_DIRECTION bwd profiles the backward
#   stalls     Nsight Compute warp-stall sampling per SASS instruction, one launch per STALL_CASES
#              entry direction:path:d:causal:seq (path sm90, or sm80 forced); the source page goes to
#              $OUT/stalls_<case>.csv (columns: address, SASS, samples by stall reason); read it
#              with scripts/stall_summary.py
#   kernels    Nsight Compute's duration of every kernel of one call per KERNEL_CASES entry
#              direction:d:causal:seq (default "bwd:64:1:1024 bwd:64:0:16384"), for tileflash
#              (as selected) and cuDNN: what the launches around the main kernel cost
#   sanitizer  compute-sanitizer memcheck, racecheck and synccheck on the small grids
#   python     the Python package (pip install ., CUDA for sm_90; build wheels carried in .whl
#              when there is no internet) and tests/python, once per CPU kernel set of
#              PYTHON_ISAS (default "amx avx512"), with faulthandler tracebacks
# Usage: scripts/device_check.sh [sass] [tests] [timing] [profile] [stalls] [kernels] [sanitizer] [python]
#   (default: sass tests timing)
# Environment: TILEFLASH_HEAD_DIMS (default "64;96;128;192;256"), BUILD_TARGETS (default
# "tileflash_tests tileflash-bench"). GoogleTest: the system's, else
# sources carried in .carry/googletest (ignored by git).
set -uo pipefail
OUT=${OUT:-/tmp/tileflash-device}
mkdir -p "$OUT"
steps=${*:-sass tests timing}
build=build-device
{ nvidia-smi --query-gpu=name,clocks.sm,clocks.max.sm,memory.total --format=csv; nvcc --version | tail -2; } 2>&1 |
  tee "$OUT/device.txt"

gtest_prefix=""
if [ ! -f /usr/lib/x86_64-linux-gnu/libgtest.a ] && [ ! -f /usr/local/lib/libgtest.a ] && [ -d .carry/googletest ]; then
  cmake -S .carry/googletest -B /tmp/gtest-build -G Ninja -DCMAKE_INSTALL_PREFIX=/tmp/gtest -DBUILD_GMOCK=OFF \
    > "$OUT/gtest.log" 2>&1 && ninja -C /tmp/gtest-build install >> "$OUT/gtest.log" 2>&1 || { tail -20 "$OUT/gtest.log"; exit 1; }
  gtest_prefix="-DCMAKE_PREFIX_PATH=/tmp/gtest"
fi

cmake -S . -B $build -G Ninja -DCMAKE_BUILD_TYPE=Release -DTILEFLASH_CUDA=ON -DTILEFLASH_CUDA_ARCHS=90 \
  "-DTILEFLASH_HEAD_DIMS=${TILEFLASH_HEAD_DIMS:-64;96;128;192;256}" $gtest_prefix -DCMAKE_CUDA_FLAGS=-Xptxas=-v \
  > "$OUT/build.log" 2>&1 &&
  ninja -C $build -j16 ${BUILD_TARGETS:-tileflash_tests tileflash-bench} >> "$OUT/build.log" 2>&1 || { tail -60 "$OUT/build.log"; exit 1; }

grid=(--dtype bf16 --head-dim "${GRID_HEAD_DIMS:-64,128,256}" --hidden 2048 --tokens 16384
      --seq "${GRID_SEQ:-1024,2048,4096,8192,16384}" --causal both --direction "${GRID_DIRECTION:-fwd}" --reps 20 --warmup 5)
for step in $steps; do
  case $step in
    sass)
      grep -A2 -E "Compiling entry function '.*sm90.*(forward|backward)_kernel" "$OUT/build.log" | grep -E "registers|spill" |
        sort | uniq -c
      # ptxas's own waits and serialised wgmma (C7515, C7517, C7518): any of them undoes a
      # Hopper kernel's asynchronous products (perf-notes-hopper.md, after v10).
      echo "ptxas wgmma messages (C751x): $(grep -cE 'C751[0-9]' "$OUT/build.log")"
      grep -E "C751[0-9]" "$OUT/build.log" | sed 's/ in \(the \)\?function.*//' | sort | uniq -c
      for object in $build/src/cuda/CMakeFiles/tileflash_cuda_sm90.dir/generated/*.o; do
        cuobjdump --dump-sass "$object" > /tmp/kernel.sass 2>&1
        printf '%s: ' "$(basename "$object")"
        for op in HGMMA UTMALDG UBLKRED SYNCS USETMAXREG LDL STL; do printf '%s=%s ' $op "$(grep -c "$op" /tmp/kernel.sass)"; done
        echo
      done
      ;;
    tests)
      timeout ${TEST_TIMEOUT:-400} $build/tests/tileflash_tests --gtest_filter="${TEST_FILTER:-CudaForward*:CudaBackward*}" \
        > "$OUT/tests.log" 2>&1
      echo "tests rc=$?"; grep -E "^\[  (FAILED|PASSED|SKIPPED) |Failure|error|Expected|Which is" "$OUT/tests.log" | head -40
      ;;
    timing)
      timeout 200 $build/bench/tileflash-bench --backends cuda,cudnn "${grid[@]}" --csv "$OUT/timing_auto.csv" \
        > "$OUT/timing_auto.log" 2>&1
      echo "timing rc=$?"
      # Pythia-2.8B's head dim (32 heads of 80) in the same call.
      timeout 100 $build/bench/tileflash-bench --backends cuda,cudnn --dtype bf16 --head-dim 80 --heads 32 \
        --tokens 16384 --seq 2048,8192,16384 --causal both --direction "${GRID_DIRECTION:-fwd}" --reps 20 --warmup 5 \
        --csv "$OUT/timing_d80.csv" > "$OUT/timing_d80.log" 2>&1
      TILEFLASH_FORCE_SM80=1 timeout 150 $build/bench/tileflash-bench --backends cuda "${grid[@]}" \
        --csv "$OUT/timing_sm80.csv" > "$OUT/timing_sm80.log" 2>&1
      python3 - "$OUT/timing_auto.csv" "$OUT/timing_sm80.csv" "$OUT/timing_d80.csv" <<'PY'
import csv, sys
rows = {}
for path in sys.argv[1:]:
    for r in csv.DictReader(line for line in open(path) if not line.startswith("#")):
        key = (r["direction"], int(r["head_dim"]), r["causal"], int(r["seq_q"]))
        rows.setdefault(key, {})[r["backend"] + ":" + r["kernel"]] = float(r["tflops"])
print("dir d  causal  seq    sm90  sm80  cudnn  sm90/cudnn  sm90/sm80")
for key in sorted(rows):
    t = rows[key]
    sm90 = next((v for k, v in t.items() if k.startswith("cuda:sm90")), float("nan"))
    sm80 = next((v for k, v in t.items() if k.startswith("cuda:sm80")), float("nan"))
    cudnn = next((v for k, v in t.items() if k.startswith("cudnn")), float("nan"))
    print(f"{key[0]:<4}{key[1]:<3}{key[2]:<8}{key[3]:<6}{sm90:6.0f}{sm80:6.0f}{cudnn:7.0f}{sm90 / cudnn:10.2f}{sm90 / sm80:10.2f}")
PY
      ;;
    profile)
      # Nsight Compute on one sm90 launch per case (clocks left alone).
      direction=${PROFILE_DIRECTION:-fwd}
      kernel=$([ "$direction" = bwd ] && echo backward_kernel || echo forward_kernel)
      for case in ${PROFILE_CASES:-128:1:2048 64:0:8192}; do
        IFS=: read -r d causal seq <<< "$case"
        timeout 150 ncu --clock-control none --kernel-name-base demangled -k regex:sm90::$kernel -s 3 -c 1 \
          --section SpeedOfLight --section WarpStateStats --section ComputeWorkloadAnalysis --section SchedulerStats \
          --section LaunchStats $build/bench/tileflash-bench --backends cuda --dtype bf16 --head-dim "$d" --hidden 2048 \
          --tokens 16384 --seq "$seq" --causal "$causal" --direction "$direction" --reps 1 --warmup 3 > "$OUT/ncu_d${d}_c${causal}_s$seq.txt" 2>&1
        echo "== ncu d=$d causal=$causal seq=$seq"
        grep -E "Duration|SM Busy|Issue Slots Busy|Executed Ipc A|Stall|Warp Cycles Per Issued|Eligible Warps|No Eligible|Tensor|Pipe" \
          "$OUT/ncu_d${d}_c${causal}_s$seq.txt" | head -40 || tail -5 "$OUT/ncu_d${d}_c${causal}_s$seq.txt"
      done
      ;;
    python)
      [ -d .whl ] && python3 -m pip install --quiet --no-index --find-links .whl scikit-build-core nanobind
      TILEFLASH_CUDA=ON TILEFLASH_CUDA_ARCHS=90 TILEFLASH_HEAD_DIMS="${TILEFLASH_HEAD_DIMS:-64;96;128;192;256}" \
        CMAKE_BUILD_PARALLEL_LEVEL=16 python3 -m pip install --quiet --no-build-isolation --no-deps . \
        > "$OUT/pip.log" 2>&1 || { echo "pip install failed"; tail -20 "$OUT/pip.log"; }
      for isa in ${PYTHON_ISAS:-amx avx512}; do
        # From outside the tree, so the installed package is the one imported.
        (cd /tmp && TILEFLASH_CPU_ISA=$isa timeout 300 python3 -X faulthandler -m pytest -q -x -p no:cacheprovider \
          "$OLDPWD/tests/python") > "$OUT/pytest_$isa.log" 2>&1
        echo "pytest $isa rc=$?"; tail -3 "$OUT/pytest_$isa.log"
        grep -m1 -A8 "Fatal Python error" "$OUT/pytest_$isa.log"
      done
      ;;
    stalls)
      for case in ${STALL_CASES:-bwd:sm80:256:0:4096 bwd:sm80:128:0:4096 bwd:sm90:128:0:8192 fwd:sm90:64:0:8192}; do
        IFS=: read -r direction path d causal seq <<< "$case"
        case $direction:$path in
          bwd:sm80) kernel=backward_main_kernel ;;
          bwd:*) kernel=backward_kernel ;;
          *) kernel=forward_kernel ;;
        esac
        name="stalls_${direction}_${path}_d${d}_c${causal}_s$seq"
        force=$([ "$path" = sm80 ] && echo 1 || echo 0)
        TILEFLASH_FORCE_SM80=$force timeout 200 ncu --clock-control none --kernel-name-base demangled \
          -k regex:$path::$kernel -s 2 -c 1 --section WarpStateStats --section SourceCounters -f -o /tmp/$name \
          $build/bench/tileflash-bench --backends cuda --dtype bf16 --head-dim "$d" --hidden 2048 --tokens 16384 \
          --seq "$seq" --causal "$causal" --direction "$direction" --reps 1 --warmup 2 > /tmp/$name.log 2>&1
        ncu -i /tmp/$name.ncu-rep --page source --csv --print-source sass > "$OUT/$name.csv" 2> /tmp/$name.err
        echo "$name: $(wc -l < "$OUT/$name.csv") lines; $(grep -m1 -E "==ERROR==|error" /tmp/$name.log /tmp/$name.err)"
      done
      ;;
    kernels)
      for case in ${KERNEL_CASES:-bwd:64:1:1024 bwd:64:0:16384}; do
        IFS=: read -r direction d causal seq <<< "$case"
        for backend in cuda cudnn; do
          name="kernels_${backend}_${direction}_d${d}_c${causal}_s$seq"
          timeout 120 ncu --clock-control none --metrics gpu__time_duration.sum --csv \
            $build/bench/tileflash-bench --backends $backend --dtype bf16 --head-dim "$d" --hidden 2048 --tokens 16384 \
            --seq "$seq" --causal "$causal" --direction "$direction" --reps 1 --warmup 1 > "$OUT/$name.csv" 2> /tmp/$name.err
          echo "== $name (µs per kernel, in launch order)"
          python3 - "$OUT/$name.csv" <<'PY'
import csv, sys
lines = [l for l in open(sys.argv[1]) if l.startswith('"')]
for r in csv.DictReader(lines):
    if r.get("Metric Name") == "gpu__time_duration.sum":
        # ncu writes ns, us or ms (or their long names) depending on the version.
        to_us = {"ns": 1e-3, "nsecond": 1e-3, "us": 1.0, "usecond": 1.0, "ms": 1e3, "msecond": 1e3}
        value, unit = float(r["Metric Value"].replace(",", "")), r["Metric Unit"]
        shown = f"{value * to_us[unit]:9.1f}" if unit in to_us else f"{value:g} {unit}"
        print(f'{r["ID"]:>4} {shown}  {r["Kernel Name"][:110]}')
PY
        done
      done
      ;;
    sanitizer)
      for tool in memcheck racecheck synccheck; do
        timeout 200 compute-sanitizer --tool $tool --error-exitcode 9 $build/tests/tileflash_tests \
          --gtest_filter='CudaForwardSanitizer.*:CudaBackwardSanitizer.*' > "$OUT/sanitizer_$tool.log" 2>&1
        echo "$tool rc=$?"; tail -3 "$OUT/sanitizer_$tool.log"
      done
      ;;
  esac
done
