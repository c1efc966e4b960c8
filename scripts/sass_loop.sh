#!/usr/bin/env bash
# SASS of one kernel from a compiled object, without a GPU: cuobjdump and nvdisasm come
# from PyPI's nvidia-cuda-cuobjdump and nvidia-cuda-nvdisasm wheels (fetched once into
# .cache/cutools; the CUDA toolkit here ships neither). Prints the registers and stack of every kernel of the object whose mangled
# name matches PATTERN, then writes the SASS of the first one to OUT (default
# /tmp/sass.txt, one instruction per line) and, with a loop given as START END (hex
# addresses, e.g. from the back branch `@!P1 BRA 0x2a80` at 0x8e40), its instruction count
# by opcode; SKIP=lo-hi,lo-hi leaves out ranges of the loop not taken on the path of
# interest (the masked copy of an element loop, the deterministic mode's branch).
# Usage: scripts/sass_loop.sh OBJECT PATTERN [START END]
# Example (the sm80 backward's plain d = 128 kernel, variant 0):
#   scripts/sass_loop.sh build-lead/src/cuda/CMakeFiles/tileflash_cuda.dir/generated/sm80_bwd_tile_d128_bf16.cu.o \
#     'backward_main_kernelILi128E13__nv_bfloat16Li0ELb0E'
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
object=$1 pattern=$2
tools=.cache/cutools
for tool in cuobjdump nvdisasm; do
  [ -x "$tools/nvidia/cu13/bin/$tool" ] && continue
  mkdir -p "$tools"
  python3 -m pip download --quiet --no-deps --dest "$tools" "nvidia-cuda-$tool"
  python3 -m zipfile -e "$tools"/nvidia_cuda_"$tool"-*.whl "$tools"
  chmod +x "$tools/nvidia/cu13/bin/$tool"
done
export PATH="$PWD/$tools/nvidia/cu13/bin:$PATH"
cuobjdump=cuobjdump
"$cuobjdump" --dump-resource-usage "$object" | grep -A1 -E "Function .*${pattern}" |
  grep -oE "Function [^:]+|REG:[0-9]+|STACK:[0-9]+" | paste - - -
function=$("$cuobjdump" --dump-resource-usage "$object" | grep -oE "Function [^:]*${pattern}[^:]*" | head -1 | cut -d' ' -f2)
out=${OUT:-/tmp/sass.txt}
"$cuobjdump" -sass -fun "$function" "$object" | grep -E '^\s+/\*[0-9a-f]{4}\*/' |
  sed -E 's/ +\/\* 0x[0-9a-f]+ \*\///; s/^\s+//' > "$out"
echo "SASS of $function: $out ($(wc -l < "$out") instructions)"
[ $# -ge 4 ] || exit 0
python3 - "$out" "$3" "$4" "${SKIP:-}" <<'EOF'
import collections, re, sys
path, start, end, skip = sys.argv[1], int(sys.argv[2], 16), int(sys.argv[3], 16), sys.argv[4]
ranges = [tuple(int(x, 16) for x in r.split("-")) for r in skip.split(",") if r]
ops = collections.Counter()
for line in open(path):
    m = re.match(r"/\*([0-9a-f]{4,})\*/\s+(@!?U?P\w+\s+)?([A-Z0-9_.]+)", line)
    if not m:
        continue
    address = int(m.group(1), 16)
    if start <= address < end and not any(lo <= address < hi for lo, hi in ranges):
        ops[m.group(3).split(".")[0]] += 1
print(sum(ops.values()), "instructions in the loop:", " ".join(f"{op} {n}" for op, n in ops.most_common()))
EOF
