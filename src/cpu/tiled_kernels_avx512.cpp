// The AVX-512 kernel set (16 floats per vector, 32 registers allow a 12 x 32 block).
// Compiled for that instruction set through a target pragma and used only where the
// CPU reports it.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>

#include "common/philox.h"
#include "cpu/tiled_kernels.h"

#if defined(__x86_64__) && defined(__GNUC__)
#define TILEFLASH_HAVE_AVX512_KERNELS 1
#pragma GCC push_options
#pragma GCC target("avx512f,avx512dq,avx512bw,avx512vl,avx2,fma")
// GCC 12's AVX-512 headers start some intrinsics from an undefined vector on purpose.
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#include <immintrin.h>

namespace tileflash::cpu::tiled {
namespace avx512 {

#define TILEFLASH_TARGET __attribute__((target("avx512f,avx512dq,avx512bw,avx512vl,avx2,fma")))

#include "cpu/vec_avx512.inl"

constexpr int kRowBlock = 12;
constexpr int kColVectors = 2;

#include "cpu/tiled_kernels.inl"
#undef TILEFLASH_TARGET

}  // namespace avx512
}  // namespace tileflash::cpu::tiled

#pragma GCC diagnostic pop
#pragma GCC pop_options
#endif

namespace tileflash::cpu::tiled {

const KernelSet& avx512_kernels() {
#if defined(TILEFLASH_HAVE_AVX512_KERNELS)
  static const KernelSet set{"avx512", avx512::Vec::width, avx512::forward_tile, avx512::backward_tile};
  return set;
#else
  return avx2_kernels();
#endif
}

}  // namespace tileflash::cpu::tiled
