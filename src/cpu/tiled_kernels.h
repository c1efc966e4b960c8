// The inner kernels of the tiled CPU FlashAttention, one set per instruction set
// (scalar, AVX2+FMA, AVX-512, AMX), chosen at run time. The driver (tiled.cpp) packs the
// operands into fp32 tiles (or, for a set with bf16 products and bf16 inputs, into bf16
// tiles); these kernels do the matrix products, the online softmax and the gradient
// recomputation on them.
#pragma once

#include <cstdint>

#include "common/attention_math.h"
#include "cpu/layout.h"

namespace tileflash::cpu::tiled {

// Query rows and key columns per tile: multiples of AMX's 32 x 32 block, of every set's
// column block (4, 16, 32) and of 4 (one Philox call covers four columns); the 6- and
// 12-row register blocks of the AVX2 and AVX-512 products end a tile with one remainder
// block. 128 rather than 96 (four interleaved rounds on the 16-core Xeon host, see
// README.md): the bf16 forward at d = 64 ran 1.08-1.30x faster (seq 1024 and 4096 are
// whole tiles), the bf16 backward 3-17 % slower, the d = 128 forward and fp32 moved
// within the host's noise. A thread's tiles stay within L2.
inline constexpr std::int64_t kBlockQ = 128;
inline constexpr std::int64_t kBlockK = 128;

// The key tiles [begin, end) that any row of query tile [row0, row0 + rows) may attend
// (empty when begin >= end); the kernels visit these and the driver packs these.
struct KeyTileRange {
  std::int64_t begin, end;
};

inline KeyTileRange key_tiles_of(const detail::BandMask& mask, std::int64_t row0, std::int64_t rows) {
  const std::int64_t first = mask.first_col(row0), end = mask.end_col(row0 + rows - 1);
  return {first / kBlockK, (end + kBlockK - 1) / kBlockK};
}

// The logit terms of one (sequence, query head) besides the scaled product.
struct Logits {
  detail::BandMask mask;
  BiasTile bias;
  float softcap = 0.0f;
  bool has_alibi = false;
  float alibi_slope = 0.0f;
  bool has_dropout = false;
  std::uint64_t dropout_seed = 0, dropout_offset = 0;
  std::uint32_t batch_head = 0, dropout_threshold = 0;
  float keep_scale = 1.0f;  // 1 / (1 - p)
};

// Packed fp32 operands: "cols" tiles are (head_dim, kBlockK), a key per column, zero
// padded past the sequence; "rows" tiles are (kBlockK, padded_dim), zero padded.
struct ForwardTileArgs {
  const float* q = nullptr;  // (rows, padded_dim), multiplied by the softmax scale
  std::int64_t row0 = 0, rows = 0;
  const float* k_cols = nullptr;  // every key tile of the sequence, consecutive
  const float* v_rows = nullptr;
  std::int64_t head_dim = 0, padded_dim = 0;
  Logits logits;
  float* out = nullptr;      // (kBlockQ, padded_dim), written normalised
  float* lse = nullptr;      // (kBlockQ), written
  float* scratch = nullptr;  // kForwardScratchFloats
};

struct BackwardTileArgs {
  const float* q = nullptr;      // (rows, padded_dim), multiplied by the softmax scale
  const float* dout = nullptr;   // (rows, padded_dim)
  const float* lse = nullptr;    // (rows)
  const float* delta = nullptr;  // (rows): rowsum(dout * out)
  std::int64_t row0 = 0, rows = 0;
  const float* k_cols = nullptr;  // this key tile only
  const float* k_rows = nullptr;
  const float* v_cols = nullptr;
  std::int64_t col0 = 0;
  std::int64_t head_dim = 0, padded_dim = 0;
  Logits logits;
  float* dk = nullptr;       // (kBlockK, padded_dim), accumulated: dS^T (scale q)
  float* dv = nullptr;       // (kBlockK, padded_dim), accumulated
  float* dq = nullptr;       // (rows, padded_dim), accumulated: dS k, without the softmax scale
  float* scratch = nullptr;  // kBackwardScratchFloats
};

// bf16 operands of a forward whose products take bf16 pairs (AMX). "pairs" tiles hold
// the B operand of a product in the pair-interleaved layout of AMX: element (t, n) of a
// (depth x n) operand sits at [t / 2][n][t % 2]. head_dim is padded to kBf16DimMultiple.
inline constexpr std::int64_t kBf16DimMultiple = 32;

struct ForwardTileBf16Args {
  const std::uint16_t* q = nullptr;  // (kBlockQ, padded_dim), not scaled, zero past rows and head_dim
  float scale = 1.0f;                // softmax scale, applied to the fp32 products
  std::int64_t row0 = 0, rows = 0;
  // Every key tile of the sequence, consecutive: K^T as pairs of head dims
  // (padded_dim / 2, kBlockK, 2) and V as pairs of keys (kBlockK / 2, padded_dim, 2),
  // zero past the sequence and head_dim.
  const std::uint16_t* k_pairs = nullptr;
  const std::uint16_t* v_pairs = nullptr;
  std::int64_t padded_dim = 0;
  Logits logits;
  float* out = nullptr;      // (kBlockQ, padded_dim), written normalised
  float* lse = nullptr;      // (kBlockQ), written
  float* scratch = nullptr;  // kForwardBf16ScratchFloats
};

// The backward on bf16 operands. dS and P enter the products over the query rows as B
// operands, so dK and dV are accumulated transposed (dK^T = Q^T dS, dV^T = dO^T P) and
// Q and dO come both as rows and transposed.
struct BackwardTileBf16Args {
  const std::uint16_t* q = nullptr;       // (kBlockQ, padded_dim), not scaled, zero past rows and head_dim
  const std::uint16_t* q_t = nullptr;     // (padded_dim, kBlockQ): Q^T, zero past rows and head_dim
  const std::uint16_t* dout = nullptr;    // (kBlockQ, padded_dim), likewise
  const std::uint16_t* dout_t = nullptr;  // (padded_dim, kBlockQ)
  const float* lse = nullptr;             // (rows)
  const float* delta = nullptr;           // (rows): rowsum(dout * out)
  float scale = 1.0f;
  std::int64_t row0 = 0, rows = 0;
  // This key tile: K^T and V^T as pairs of head dims (padded_dim / 2, kBlockK, 2), K as
  // pairs of keys (kBlockK / 2, padded_dim, 2); zero past the sequence and head_dim.
  const std::uint16_t* k_pairs = nullptr;
  const std::uint16_t* v_pairs = nullptr;
  const std::uint16_t* k_key_pairs = nullptr;
  std::int64_t col0 = 0;
  std::int64_t padded_dim = 0;
  Logits logits;
  float* dk_t = nullptr;     // (padded_dim, kBlockK), accumulated: Q^T dS, without the softmax scale
  float* dv_t = nullptr;     // (padded_dim, kBlockK), accumulated
  float* dq = nullptr;       // (rows, padded_dim), accumulated: dS K, without the softmax scale
  float* scratch = nullptr;  // backward_bf16_scratch_floats(padded_dim)
};

inline constexpr std::int64_t kForwardScratchFloats = kBlockQ * kBlockK + 5 * kBlockQ;
// The fp32 scratch of the fp32 forward, then P rounded to bf16 (two per float).
inline constexpr std::int64_t kForwardBf16ScratchFloats = kForwardScratchFloats + kBlockQ * kBlockK / 2;
inline constexpr std::int64_t kBackwardScratchFloats = 4 * kBlockQ * kBlockK;
// The fp32 scratch of the fp32 backward, three bf16 tiles (two per float) and a dQ tile.
inline constexpr std::int64_t backward_bf16_scratch_floats(std::int64_t padded_dim) {
  return kBackwardScratchFloats + 3 * kBlockQ * kBlockK / 2 + kBlockQ * padded_dim;
}

struct KernelSet {
  const char* name;
  int vector_width;  // padded_dim is a multiple of it
  void (*forward_tile)(const ForwardTileArgs&);
  void (*backward_tile)(const BackwardTileArgs&);
  // Set where the products run on bf16 operands (AMX); the driver uses them for bf16
  // inputs and the fp32 kernels for every other dtype.
  void (*forward_tile_bf16)(const ForwardTileBf16Args&) = nullptr;
  void (*backward_tile_bf16)(const BackwardTileBf16Args&) = nullptr;
};

const KernelSet& scalar_kernels();
const KernelSet& avx2_kernels();
const KernelSet& avx512_kernels();
// AVX-512 plus AMX-BF16 products for bf16 forwards; only valid where amx_usable().
const KernelSet& amx_kernels();
// Whether the CPU reports AMX-BF16 and AVX512-BF16 and the OS granted this process the
// AMX tile state (asked once).
bool amx_usable();
// The fastest set this CPU runs; TILEFLASH_CPU_ISA=scalar|avx2|avx512|amx narrows the choice.
const KernelSet& best_kernels();

}  // namespace tileflash::cpu::tiled
