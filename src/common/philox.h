// Philox 4x32-10 (Salmon et al., SC'11) and the dropout stream every backend
// draws, so that CPU and GPU kernels keep exactly the same entries of P.
//
// The keep decision for logit (sequence b, query head h, query row i, key column j),
// with i and j local to the sequence (varlen included), is
//   counter = { j / 4, i, b * heads_q + h, low32(offset) }
//   key     = { low32(seed), high32(seed) + high32(offset) }
//   r       = philox4x32_10(counter, key)[j % 4]
//   keep    = r >= dropout_threshold(p)
// One Philox call covers four neighbouring columns of a row.
#pragma once

#include <cstdint>

#include "common/host_device.h"

namespace tileflash::detail {

struct Philox4 {
  std::uint32_t x, y, z, w;
};

TF_HOST_DEVICE void mul_hi_lo(std::uint32_t a, std::uint32_t b, std::uint32_t& hi, std::uint32_t& lo) {
#if defined(__CUDA_ARCH__)
  hi = __umulhi(a, b);
  lo = a * b;
#else
  const std::uint64_t p = static_cast<std::uint64_t>(a) * b;
  hi = static_cast<std::uint32_t>(p >> 32);
  lo = static_cast<std::uint32_t>(p);
#endif
}

TF_HOST_DEVICE Philox4 philox4x32_10(Philox4 c, std::uint32_t k0, std::uint32_t k1) {
  constexpr std::uint32_t kMul0 = 0xD2511F53u, kMul1 = 0xCD9E8D57u;
  constexpr std::uint32_t kWeyl0 = 0x9E3779B9u, kWeyl1 = 0xBB67AE85u;
#if defined(__CUDA_ARCH__)
#pragma unroll
#endif
  for (int round = 0; round < 10; ++round) {
    std::uint32_t hi0, lo0, hi1, lo1;
    mul_hi_lo(kMul0, c.x, hi0, lo0);
    mul_hi_lo(kMul1, c.z, hi1, lo1);
    c = Philox4{hi1 ^ c.y ^ k0, lo1, hi0 ^ c.w ^ k1, lo0};
    k0 += kWeyl0;
    k1 += kWeyl1;
  }
  return c;
}

// Entries with r < threshold are dropped: P(drop) = threshold / 2^32 ~= p.
TF_HOST_DEVICE std::uint32_t dropout_threshold(float p) {
  const double scaled = static_cast<double>(p) * 4294967296.0;
  return scaled >= 4294967295.0 ? 0xFFFFFFFFu : static_cast<std::uint32_t>(scaled);
}

// The four random words of row `row`, columns 4*col_group .. 4*col_group+3.
TF_HOST_DEVICE Philox4 dropout_bits(std::uint64_t seed, std::uint64_t offset, std::uint32_t batch_head,
                                    std::uint32_t row, std::uint32_t col_group) {
  const Philox4 counter{col_group, row, batch_head, static_cast<std::uint32_t>(offset)};
  return philox4x32_10(counter, static_cast<std::uint32_t>(seed),
                       static_cast<std::uint32_t>(seed >> 32) + static_cast<std::uint32_t>(offset >> 32));
}

TF_HOST_DEVICE std::uint32_t philox_word(const Philox4& r, int index) {
  return index == 0 ? r.x : index == 1 ? r.y : index == 2 ? r.z : r.w;
}

TF_HOST_DEVICE bool dropout_keep(std::uint64_t seed, std::uint64_t offset, std::uint32_t batch_head,
                                 std::uint32_t row, std::uint32_t col, std::uint32_t threshold) {
  const Philox4 r = dropout_bits(seed, offset, batch_head, row, col >> 2);
  return philox_word(r, static_cast<int>(col & 3u)) >= threshold;
}

}  // namespace tileflash::detail
