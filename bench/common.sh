# Shell helpers shared by the bench/run_*.sh scripts (sourced, not run).

bench_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

# The commit being measured: $TILEFLASH_COMMIT when set (a snapshot copied inside
# another checkout, as on the lent GPU machine, would otherwise report the enclosing
# repository's HEAD), else git.
bench_commit() {
  local commit
  if [[ -n "${TILEFLASH_COMMIT:-}" ]]; then
    echo "$TILEFLASH_COMMIT"
  elif commit="$(git -C "$bench_root" rev-parse --short=12 HEAD 2>/dev/null)"; then
    git -C "$bench_root" diff --quiet HEAD -- 2>/dev/null || commit+="+uncommitted"
    echo "$commit"
  else
    echo "unknown"
  fi
}

bench_gpu_name() { nvidia-smi --query-gpu=name --format=csv,noheader 2>/dev/null | head -n1; }
bench_cpu_name() { grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//'; }
# "NVIDIA H200" -> "nvidia-h200", for file names.
bench_slug() { echo "$1" | tr '[:upper:]' '[:lower:]' | tr -cs 'a-z0-9' '-' | sed 's/^-//; s/-$//'; }

# bench_build BUILD_DIR CUDA(ON|OFF) [extra cmake args...]: configure and build tileflash-bench.
bench_build() {
  local build_dir="$1" cuda="$2"
  shift 2
  cmake -S "$bench_root" -B "$build_dir" -G Ninja -DCMAKE_BUILD_TYPE=Release -DTILEFLASH_BUILD_TESTS=OFF \
    -DTILEFLASH_CUDA="$cuda" "$@" >/dev/null
  echo "building tileflash-bench in $build_dir (log: $build_dir/build.log)" >&2
  if ! cmake --build "$build_dir" --parallel "${TILEFLASH_JOBS:-$(nproc)}" --target tileflash-bench \
      >"$build_dir/build.log" 2>&1; then
    tail -n 60 "$build_dir/build.log" >&2
    return 1
  fi
}

# bench_merge OUT DEVICE COMMAND IN.csv...: one CSV with a header comment naming the
# device, date, commit and command, then the column line once, then every row.
bench_merge() {
  local out="$1" device="$2" command="$3"
  shift 3
  {
    echo "# device: $device"
    echo "# host cpu: $(bench_cpu_name) ($(nproc) threads)"
    echo "# date: $(date -u +%Y-%m-%dT%H:%M:%SZ)"
    # Other work on a shared machine slows every timing: say how busy it was.
    echo "# load average (1, 5, 15 min) when the run ended: $(cut -d' ' -f1-3 /proc/loadavg)"
    echo "# commit: $(bench_commit)"
    echo "# command: $command"
    head -n1 "$1"
    for csv in "$@"; do tail -n +2 "$csv"; done
  } >"$out"
}

# Copy results where the device tool brings files back from, when run there.
bench_export() {
  [[ -n "${OUT:-}" && -d "${OUT:-}" ]] || return 0
  local file
  for file in "$@"; do
    [[ "$(cd "$(dirname "$file")" && pwd)" == "$(cd "$OUT" && pwd)" ]] || cp "$file" "$OUT"/
  done
}

# bench_plot KIND CSV: a PNG beside the CSV when matplotlib is there (plot.py).
bench_plot() {
  local png="${2%.csv}.png"
  if python3 -c 'import matplotlib' 2>/dev/null && python3 "$bench_root/bench/plot.py" "$1" "$2" -o "$png" >&2; then
    echo "$png"
  else
    echo "bench: no plot of $2 (matplotlib missing or plot.py failed)" >&2
  fi
}
