#!/usr/bin/env bash
# Fetch the header-only third-party code the benchmark needs into third_party/
# (ignored by git). Idempotent: does nothing when the headers are already there.
#
#   third_party/cudnn-frontend/include   cuDNN's C++ frontend (graph API), from the
#                                        PyPI wheel nvidia-cudnn-frontend; used by the
#                                        `cudnn` backend of tileflash-bench.
set -euo pipefail

CUDNN_FRONTEND_VERSION="${CUDNN_FRONTEND_VERSION:-1.32.0}"
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
dest="$root/third_party/cudnn-frontend"

if [[ -f "$dest/include/cudnn_frontend.h" ]]; then
  exit 0
fi

python="${PYTHON:-python3}"
if ! "$python" -m pip --version >/dev/null 2>&1; then
  echo "fetch_third_party: pip is missing; the cudnn backend of tileflash-bench will not be built" >&2
  exit 0
fi

scratch="$(mktemp -d)"
trap 'rm -rf "$scratch"' EXIT
# The wheel's headers do not depend on the Python version; any platform wheel will do.
if ! "$python" -m pip download --quiet --no-deps --only-binary=:all: \
      --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 \
      --python-version 3.11 --implementation cp \
      -d "$scratch" "nvidia-cudnn-frontend==$CUDNN_FRONTEND_VERSION"; then
  echo "fetch_third_party: could not download nvidia-cudnn-frontend; the cudnn backend will not be built" >&2
  exit 0
fi
"$python" - "$scratch"/nvidia_cudnn_frontend-*.whl "$dest" <<'PY'
import pathlib, sys, zipfile
wheel, dest = sys.argv[1], pathlib.Path(sys.argv[2])
with zipfile.ZipFile(wheel) as z:
    members = [m for m in z.namelist() if m.startswith("include/")]
    if not members:
        sys.exit("fetch_third_party: the wheel holds no include/ folder")
    z.extractall(dest, members)
PY
echo "fetch_third_party: cudnn-frontend $CUDNN_FRONTEND_VERSION headers in $dest/include"
