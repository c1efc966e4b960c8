#!/usr/bin/env bash
# Builds tileflash-bench here for each revision given (label=rev, or label=. for the working
# tree as it is) into .carry/abbin/<label>.gz, for scripts/device_ab_prebuilt.sh on the lent GPU
# machine. Revisions are built in one build folder one after the other (BUILD_DIR, default
# build-ab: sm_90, head dims of TILEFLASH_HEAD_DIMS, default "64;96;128;256"), so only what
# changed between them recompiles; the working tree's changes are stashed and restored around
# the other revisions. With TESTS=1 the working tree's tileflash_tests goes along too
# (.carry/abbin/tests/tileflash_tests.gz), and the device script runs its GPU tests first.
# Usage: scripts/ab_build_prebuilt.sh new=. old=main [label=rev ...]
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
build=${BUILD_DIR:-build-ab}
dest=.carry/abbin
rm -rf "$dest" && mkdir -p "$dest"
scripts/fetch_third_party.sh >/dev/null
cmake -S . -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=Release -DTILEFLASH_CUDA=ON -DTILEFLASH_CUDA_ARCHS=90 \
  "-DTILEFLASH_HEAD_DIMS=${TILEFLASH_HEAD_DIMS:-64;96;128;256}" -DTILEFLASH_BUILD_TESTS=ON -DTILEFLASH_BUILD_BENCH=ON \
  > /tmp/ab-build-configure.log
branch=$(git rev-parse --abbrev-ref HEAD)
for spec in "$@"; do
  label=${spec%%=*} rev=${spec#*=}
  if [ "$rev" = . ]; then
    targets=(tileflash-bench)
    [ "${TESTS:-0}" = 1 ] && targets+=(tileflash_tests)
    ninja -C "$build" "${targets[@]}" > "/tmp/ab-build-$label.log" 2>&1 || { tail -30 "/tmp/ab-build-$label.log"; exit 1; }
    if [ "${TESTS:-0}" = 1 ]; then
      mkdir -p "$dest/tests"
      gzip -c "$build/tests/tileflash_tests" > "$dest/tests/tileflash_tests.gz"
    fi
    echo "$label: $(git rev-parse --short HEAD)$(git diff --quiet HEAD || echo '+uncommitted')" >> "$dest/REVISIONS"
  else
    stashed=0
    git diff --quiet HEAD || { git stash -q && stashed=1; }
    git checkout -q "$rev"
    ninja -C "$build" tileflash-bench > "/tmp/ab-build-$label.log" 2>&1 || status=$?
    git checkout -q "$branch"
    [ $stashed = 1 ] && git stash pop -q
    [ "${status:-0}" = 0 ] || { tail -30 "/tmp/ab-build-$label.log"; exit 1; }
    echo "$label: $(git rev-parse --short "$rev")" >> "$dest/REVISIONS"
  fi
  gzip -c "$build/bench/tileflash-bench" > "$dest/$label.gz"
done
cp scripts/device_ab_prebuilt.sh scripts/ab_summary.py bench/torch_sdpa.py "$dest/"
cat "$dest/REVISIONS"
du -sh "$dest"
