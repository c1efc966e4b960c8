#!/usr/bin/env bash
# Builds and installs the tileflash Python package into a virtual environment, then runs
# the pytest suite in tests/python. Exits non-zero on any failure, and also when pytest
# collected no test at all.
#
#   scripts/test_python.sh [pytest arguments, relative to tests/python; default: all]
#
# Environment:
#   TILEFLASH_VENV   the virtual environment (default: .venv in the repository, git-ignored)
#   TILEFLASH_CUDA   AUTO, ON or OFF; default OFF here, since CI machines have nvcc but no GPU
#                    and compiling every kernel for the package would double CI's build time
#   CMAKE_BUILD_PARALLEL_LEVEL  build jobs (default 2)
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo"
venv="${TILEFLASH_VENV:-$repo/.venv}"
export TILEFLASH_CUDA="${TILEFLASH_CUDA:-OFF}"
export CMAKE_BUILD_PARALLEL_LEVEL="${CMAKE_BUILD_PARALLEL_LEVEL:-2}"

if [[ ! -x "$venv/bin/python" ]]; then
  echo "== creating $venv"
  python3 -m venv "$venv"
fi
python="$venv/bin/python"
pip=("$python" -m pip install --quiet --disable-pip-version-check)

echo "== build requirements and test tools"
"${pip[@]}" "scikit-build-core>=0.10" "nanobind>=2.0" numpy pytest

# torch from PyPI brings its CUDA libraries (a few GB, about two minutes here); the
# torch-dependent tests need it. Without it they are skipped, loudly, and the numpy tests run.
echo "== torch and transformers"
if ! "${pip[@]}" "torch>=2.4" "transformers>=5.0"; then
  echo "WARNING: torch/transformers could not be installed; their tests will be skipped" >&2
fi

echo "== building and installing tileflash (TILEFLASH_CUDA=$TILEFLASH_CUDA)"
start=$SECONDS
"${pip[@]}" --no-build-isolation --no-deps --force-reinstall "$repo"
echo "   installed in $((SECONDS - start)) s"

echo "== pytest tests/python"
# Run from the tests folder so that the installed package, not the source tree, is imported.
set +e
[[ $# -gt 0 ]] || set -- .
(cd "$repo/tests/python" && "$python" -m pytest -p no:cacheprovider -q -rs "$@")
status=$?
set -e
if [[ $status -eq 5 ]]; then
  echo "ERROR: pytest collected no tests" >&2
  exit 1
fi
exit $status
