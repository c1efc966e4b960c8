// FlashAttention-2 backward on mma.sync (sm_80 and newer).
//
// Kernels of one call:
//   1. backward_dot_kernel:   D = rowsum(dO * O) per query row, fp32; clears the dQ
//      accumulator and the turn counters on the way.
//   2. backward_main_kernel:  one CTA per (key block, kv head, sequence). K and V stay in
//      shared memory; the CTA walks the query blocks of every query head of its GQA group,
//      recomputes P from the log-sum-exp, accumulates dK and dV in registers (so the group
//      sum needs no atomics), and adds dS K into an fp32 dQ accumulator: atomics in fast
//      mode; in deterministic mode the key blocks of a sequence take turns per query block
//      (ordered semaphores, as FA3 does), so the sums happen in one fixed order.
//   3. backward_dq_convert_kernel: dQ = scale * accumulator, in the output dtype.
//   4. varlen only: backward_zero_unused_keys_kernel zeroes dK, dV rows past the last sequence.
// The bias is a constant of the problem: no gradient is computed for it. Workspace (D, the
// dQ accumulator, the turn counters) is linear in the number of query rows.
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cstdint>
#include <type_traits>

#include "common/attention_math.h"
#include "common/philox.h"
#include "cuda/common/fragment.cuh"
#include "cuda/common/logits.cuh"
#include "cuda/common/ptx.cuh"
#include "cuda/common/tile_io.cuh"
#include "cuda/sm80/bwd_params.h"

namespace tileflash::cuda::sm80 {

// Block sizes and warp layouts of the three products of one iteration:
//   S, dP  = Q K^T, dO V^T      (block_m x block_n), warps_m_sdp warps along m
//   dV, dK += P^T dO, dS^T Q    (block_n x head_dim), warps_n_dkv warps along n
//   dQ     = dS K               (block_m x head_dim), warps_m_dq warps along m
// The remaining warps split the other dimension. double_buffer: the next query block's Q
// and dO load into a second buffer during the whole iteration; without it they load into
// the one buffer once dV and dK have read it, hidden behind the dQ product only.
struct BackwardTileShape {
  int block_m, block_n, warps, warps_m_sdp, warps_n_dkv, warps_m_dq;
  bool double_buffer;
};

constexpr bool operator==(const BackwardTileShape& x, const BackwardTileShape& y) {
  return x.block_m == y.block_m && x.block_n == y.block_n && x.warps == y.warps && x.warps_m_sdp == y.warps_m_sdp &&
         x.warps_n_dkv == y.warps_n_dkv && x.warps_m_dq == y.warps_m_dq && x.double_buffer == y.double_buffer;
}

// Shape variants, fastest first; the launcher takes the first that fits the device's
// shared memory per block (bwd_launch.cu). Variant 0 is sized for sm_90 (227 KiB),
// variant 1 for sm_80 (163 KiB), variant 2 for sm_86/89/120 (99 KiB). Shared memory of a
// variant (2 or 4 Q/dO tiles, K and V, P and dS; rows padded by 16 bytes), 16-bit data:
//   head dim      variant 0                variant 1            variant 2
//   32           74 KiB                   = 0                  = 0
//   64          176 KiB (128 query rows)  106 KiB              88 KiB (single Q/dO)
//   96          138 KiB                   = 0                  96 KiB (64 keys)
//   128         170 KiB                  136 KiB (single)      86 KiB (64 keys, single)
//   192         168 KiB (64 keys)        118 KiB (single)      85 KiB (32 keys, single)
//   256         216 KiB (64 keys)        150 KiB (single)      71 KiB (32 x 32, 4 warps, single)
// At d = 64 the 128-row query block halves the operand loads per mma of S and dP (warp
// tiles 32 x 64) and the barriers per key; its S and dP accumulators leave no registers
// to issue the two products pairwise.
constexpr int kBackwardVariants = 3;

constexpr BackwardTileShape backward_tile_shape(int head_dim, int variant) {
  if (variant == 2) {
    if (head_dim <= 32) return {64, 128, 8, 2, 4, 4, true};
    if (head_dim <= 64) return {64, 128, 8, 2, 4, 2, false};
    if (head_dim <= 96) return {64, 64, 8, 2, 4, 4, true};
    if (head_dim <= 128) return {64, 64, 8, 2, 4, 2, false};
    if (head_dim <= 192) return {64, 32, 8, 4, 2, 4, false};
    // 64 query rows would need 109 KiB; 32 x 32 blocks split into 16 x 16 warp tiles
    // only four ways.
    return {32, 32, 4, 2, 2, 2, false};
  }
  if (variant == 1) {
    if (head_dim <= 32) return backward_tile_shape(head_dim, 0);
    if (head_dim <= 64) return {64, 128, 8, 2, 4, 2, true};
    if (head_dim <= 96) return backward_tile_shape(head_dim, 0);
    if (head_dim <= 128) return {64, 128, 8, 2, 4, 2, false};
    if (head_dim <= 192) return {64, 64, 8, 2, 4, 2, false};
    return {64, 64, 8, 2, 2, 2, false};
  }
  if (head_dim <= 32) return {64, 128, 8, 2, 4, 4, true};
  if (head_dim <= 64) return {128, 128, 8, 4, 4, 4, true};
  if (head_dim <= 96) return {64, 128, 8, 2, 4, 4, true};
  if (head_dim <= 128) return {64, 128, 8, 2, 4, 2, true};
  if (head_dim <= 192) return {64, 64, 8, 2, 4, 2, true};
  return {64, 64, 8, 2, 2, 2, true};
}

// The first variant with the same shape: variants that repeat a shape share its kernels.
constexpr int backward_distinct_variant(int head_dim, int variant) {
  for (int earlier = 0; earlier < variant; ++earlier)
    if (backward_tile_shape(head_dim, earlier) == backward_tile_shape(head_dim, variant)) return earlier;
  return variant;
}

// The head-dim tiles whose warp tiles divide evenly under every variant's shape.
constexpr bool backward_supports_tile(int head_dim_tile) {
  return head_dim_tile <= 128 ? head_dim_tile % 32 == 0 : head_dim_tile % 64 == 0;
}

// The launch order of the key blocks: (key blocks, kv heads, sequences), key blocks
// fastest, except under a causal band with at most 64 key blocks per head, where each
// sequence's heads take their first (heaviest) key block, then their second (the Hopper
// backward's v15, docs/perf-notes-hopper.md, says why; both backwards use this order). Key
// block n of a head still launches after its key block n - 1, which deterministic mode's
// turns rely on.
TF_HOST_DEVICE bool key_blocks_heads_fastest(const AttentionArgs& a, int block_n) {
  return a.window_right >= 0 && (a.seq_k + block_n - 1) / block_n <= 64;
}

template <int kHeadDim, class Element, int kVariant>
struct BackwardKernelTraits {
  static constexpr BackwardTileShape kShape = backward_tile_shape(kHeadDim, kVariant);
  static constexpr int kWarps = kShape.warps;
  static constexpr int kThreads = 32 * kWarps;
  static constexpr int kBlockM = kShape.block_m;
  static constexpr int kBlockN = kShape.block_n;
  static constexpr bool kDoubleBuffer = kShape.double_buffer;

  static constexpr int kSdpWarpsM = kShape.warps_m_sdp, kSdpWarpsN = kWarps / kSdpWarpsM;
  static constexpr int kSdpRows = kBlockM / kSdpWarpsM, kSdpCols = kBlockN / kSdpWarpsN;
  static constexpr int kDkvWarpsN = kShape.warps_n_dkv, kDkvWarpsD = kWarps / kDkvWarpsN;
  static constexpr int kDkvRows = kBlockN / kDkvWarpsN, kDkvCols = kHeadDim / kDkvWarpsD;
  static constexpr int kDqWarpsM = kShape.warps_m_dq, kDqWarpsD = kWarps / kDqWarpsM;
  static constexpr int kDqRows = kBlockM / kDqWarpsM, kDqCols = kHeadDim / kDqWarpsD;
  // Rows come in 16-row mma tiles, columns in pairs of 8-column tiles (one ldmatrix.x4).
  static_assert(kSdpWarpsM * kSdpWarpsN == kWarps && kDkvWarpsN * kDkvWarpsD == kWarps &&
                    kDqWarpsM * kDqWarpsD == kWarps,
                "every product's warp grid uses all warps");
  static_assert(kSdpRows % 16 == 0 && kSdpCols % 16 == 0, "S/dP warp tile must be whole 16x16 blocks");
  static_assert(kDkvRows % 16 == 0 && kDkvCols % 16 == 0, "dK/dV warp tile must be whole 16x16 blocks");
  static_assert(kDqRows % 16 == 0 && kDqCols % 16 == 0, "dQ warp tile must be whole 16x16 blocks");
  static_assert(kHeadDim % 16 == 0 && kBlockM % 16 == 0 && kBlockN % 16 == 0, "tiles feed m16n8k16");
  // Dropout draws one Philox group per 4 key columns from n0 on.
  static_assert(kBlockN % 4 == 0, "key blocks start on a Philox group");

  using RowTile = SmemTile<Element, kBlockM, kHeadDim>;  // Q, dO
  using KeyTile = SmemTile<Element, kBlockN, kHeadDim>;  // K, V
  using ScoreTile = SmemTile<Element, kBlockM, kBlockN>; // P (dropped), dS
  static constexpr int kRowBuffers = kDoubleBuffer ? 2 : 1;
  // Two choices that measured differently per head dim on H200 (forced, 1k-16k, both masks;
  // docs/perf-notes-backward.md v11), where ptxas schedules each tile's loop its own way:
  // the heads-fastest launch order under a causal band (key_blocks_heads_fastest) gave the
  // 128 tile +2 to +6 %, non-causal calls included, but cost the 64 tile 4-5 % and moved the
  // 256 tile both ways; dQ added by red.global (no value returned) instead of atomicAdd's
  // ATOMG gave the 64 tile +0.2 to +3.3 % in two calls, the others -3 to +2 %; under v13's
  // schedule (kOperandPrefetch) it gives the 128 tile +1 to +2.4 % up to 8k (-0.6 % at 16k)
  // and keeps the 64 tile ahead (ATOMG there: -0.3 to -3.4 %).
  static constexpr bool kHeadsFastestOrder = kHeadDim == 128;
  static constexpr bool kDqByReduction = kHeadDim <= 64 || kHeadDim == 128;
  // dK and dV staged as 16-bit rows in the K and V tiles and stored as 16-byte row chunks,
  // instead of 4-byte stores from the accumulator layout (8 rows per warp store): +2 to +5 %
  // at 1k for the 64 and 128 tiles, where a CTA walks few query blocks, but up to -1.7 %
  // at 16k for the 128 tile and -1 to -3 % at most lengths for the 256 tile, whose loops
  // ptxas then allocates differently (H200, forced, v12 in docs/perf-notes-backward.md).
  // Used where it raises the lowest ratio to FA2 over the grid.
  static constexpr bool kStagedEpilogue = kHeadDim <= 128;
  // Each product's next k-step operands requested before this step's mma (warp_gemm): in
  // the 256 tile's loop that is 1.5-2.2 % faster than leaving the loads to ptxas, in the
  // 64 and 128 tiles' loops 0.8-2.8 % and 2.6-3.9 % slower (H200, forced, the whole grid).
  static constexpr bool kOperandPrefetch = kHeadDim > 128;
  // lse and D of a query block's rows, loaded with its Q and dO (one buffer each).
  static constexpr int kStatsBytes = 2 * kBlockM * 4;
  static constexpr int kSmemBytes =
      2 * kRowBuffers * RowTile::kBytes + 2 * KeyTile::kBytes + 2 * ScoreTile::kBytes + kRowBuffers * kStatsBytes;
  static_assert(2 * kBlockM <= kThreads, "one thread per statistic of a query block");

  // Whether the main kernel (the extras instantiation when `extras`) runs in the
  // heads-fastest order; the extras kernel keeps one order (the choice cost it 70 bytes of
  // spills at d = 128).
  static TF_HOST_DEVICE bool heads_fastest(const AttentionArgs& a, bool extras) {
    return kHeadsFastestOrder && !extras && key_blocks_heads_fastest(a, kBlockN);
  }
  static_assert(kSmemBytes <= 227 * 1024, "backward tile exceeds the 227 KiB of shared memory of sm_90");
  static_assert(kVariant == 0 || kSmemBytes <= (kVariant == 1 ? 163 : 99) * 1024,
                "a smaller variant exceeds the shared memory it is sized for");
};

// The A operand of a 16x16 block of X^T from a tile storing X (row = k, col = m), e.g. P^T
// for dV = P^T dO with P stored query-major: ldmatrix.trans turns each 8x8 matrix around.
// Belongs next to load_a_operand in cuda/common/tile_io.cuh.
template <class Element, int kRows, int kCols>
__device__ __forceinline__ void load_a_operand_trans(const SmemTile<Element, kRows, kCols>& tile, int k0, int m0,
                                                     std::uint32_t (&a)[4]) {
  const int lane = static_cast<int>(threadIdx.x % 32);
  ptx::ldmatrix_x4_trans(a, tile.at(k0 + (lane & 7) + (lane >> 4) * 8, m0 + ((lane >> 3) & 1) * 8));
}

// acc += A B over kSteps k-steps of 16 on one warp's tile. load_a(step, a) fills the A
// operands of every 16-row tile, load_b(step, b) the B operands of every pair of 8-column
// tiles. With kPrefetch the next step's operands are requested before this step's mma
// (two register sets); without it each step's loads come first and ptxas schedules them
// (BackwardKernelTraits::kOperandPrefetch says where each is used).
template <class Element, int kSteps, bool kPrefetch, int kMTiles, int kNTiles, class LoadA, class LoadB>
__device__ __forceinline__ void warp_gemm(AccumulatorTile<kMTiles, kNTiles>& acc, LoadA&& load_a, LoadB&& load_b) {
  static_assert(kNTiles % 2 == 0, "B operands come in pairs of 8-column tiles");
  std::uint32_t a[2][kMTiles][4];
  std::uint32_t b[2][kNTiles / 2][2][2];
  if constexpr (kPrefetch) {
    load_a(0, a[0]);
    load_b(0, b[0]);
  }
#pragma unroll
  for (int step = 0; step < kSteps; ++step) {
    if constexpr (!kPrefetch) {
      load_a(step, a[step & 1]);
      load_b(step, b[step & 1]);
    } else if (step + 1 < kSteps) {
      load_a(step + 1, a[(step + 1) & 1]);
      load_b(step + 1, b[(step + 1) & 1]);
    }
#pragma unroll
    for (int mi = 0; mi < kMTiles; ++mi)
#pragma unroll
      for (int nj = 0; nj < kNTiles / 2; ++nj)
#pragma unroll
        for (int h2 = 0; h2 < 2; ++h2)
          ptx::mma_16x8x16<Element>(acc.value[mi][2 * nj + h2], a[step & 1][mi], b[step & 1][nj][h2]);
  }
}

// Two products of the same shape at once (acc0 += A0 B0, acc1 += A1 B1): twice the
// independent mma per k-step, for products whose operands fit in registers together.
template <class Element, int kSteps, bool kPrefetch, int kMTiles, int kNTiles, class LoadA0, class LoadB0, class LoadA1,
          class LoadB1>
__device__ __forceinline__ void warp_gemm_pair(AccumulatorTile<kMTiles, kNTiles>& acc0, LoadA0&& load_a0,
                                               LoadB0&& load_b0, AccumulatorTile<kMTiles, kNTiles>& acc1,
                                               LoadA1&& load_a1, LoadB1&& load_b1) {
  static_assert(kNTiles % 2 == 0, "B operands come in pairs of 8-column tiles");
  std::uint32_t a0[2][kMTiles][4], a1[2][kMTiles][4];
  std::uint32_t b0[2][kNTiles / 2][2][2], b1[2][kNTiles / 2][2][2];
  if constexpr (kPrefetch) {
    load_a0(0, a0[0]);
    load_b0(0, b0[0]);
    load_a1(0, a1[0]);
    load_b1(0, b1[0]);
  }
#pragma unroll
  for (int step = 0; step < kSteps; ++step) {
    if constexpr (!kPrefetch) {
      load_a0(step, a0[step & 1]);
      load_b0(step, b0[step & 1]);
      load_a1(step, a1[step & 1]);
      load_b1(step, b1[step & 1]);
    } else if (step + 1 < kSteps) {
      load_a0(step + 1, a0[(step + 1) & 1]);
      load_b0(step + 1, b0[(step + 1) & 1]);
      load_a1(step + 1, a1[(step + 1) & 1]);
      load_b1(step + 1, b1[(step + 1) & 1]);
    }
#pragma unroll
    for (int mi = 0; mi < kMTiles; ++mi)
#pragma unroll
      for (int nj = 0; nj < kNTiles / 2; ++nj)
#pragma unroll
        for (int h2 = 0; h2 < 2; ++h2) {
          ptx::mma_16x8x16<Element>(acc0.value[mi][2 * nj + h2], a0[step & 1][mi], b0[step & 1][nj][h2]);
          ptx::mma_16x8x16<Element>(acc1.value[mi][2 * nj + h2], a1[step & 1][mi], b1[step & 1][nj][h2]);
        }
  }
}

// 2^x on the special-function unit (about 2 ulp; subnormal results flush to 0, which P
// rounded to 16 bits cannot hold anyway).
__device__ __forceinline__ float fast_exp2(float x) {
  float y;
  asm("ex2.approx.ftz.f32 %0, %1;\n" : "=f"(y) : "f"(x));
  return y;
}

template <class Element>
__device__ __forceinline__ float to_float(Element x);
template <>
__device__ __forceinline__ float to_float<__half>(__half x) {
  return __half2float(x);
}
template <>
__device__ __forceinline__ float to_float<__nv_bfloat16>(__nv_bfloat16 x) {
  return __bfloat162float(x);
}

// Where one sequence's rows start and how long it is.
struct SequenceSpan {
  std::int64_t q_row0, k_row0;  // first row in the packed (or per-batch) row index
  std::int64_t q_packed0;       // first row in the workspace row index (rows_q)
  int seq_q, seq_k;
};

__device__ __forceinline__ SequenceSpan sequence_span(const AttentionArgs& a, int b) {
  if (a.cu_seqlens_q != nullptr) {
    const int q0 = a.cu_seqlens_q[b], k0 = a.cu_seqlens_k[b];
    return {q0, k0, q0, a.cu_seqlens_q[b + 1] - q0, a.cu_seqlens_k[b + 1] - k0};
  }
  return {0, 0, b * a.seq_q, static_cast<int>(a.seq_q), static_cast<int>(a.seq_k)};
}

// Element (batch, row, head, 0) of a sequence tensor.
template <class Element>
__device__ __forceinline__ Element* row_pointer(const SequenceTensor& t, std::int64_t batch, std::int64_t row, int head) {
  return static_cast<Element*>(t.data) + batch * t.batch_stride + row * t.row_stride + head * t.head_stride;
}

// ---------------------------------------------------------------------------------------
// The (batch, row) of packed query row `row` for a padded batch; varlen rows are addressed
// directly (batch stride 0).
struct PackedRow {
  std::int64_t batch, row;
};
__device__ __forceinline__ PackedRow unpack_row(const AttentionArgs& a, std::int64_t row) {
  if (a.cu_seqlens_q != nullptr) return {0, row};
  return {row / a.seq_q, row % a.seq_q};
}

// D = rowsum(dO * O) for every (packed query row, head), one 16-byte chunk of a row per
// lane and kLanesPerRow lanes per row (head_dim <= 8 kLanesPerRow); the same threads also
// zero `cleared` (the dQ accumulator and whatever follows it). Both passes are bound by
// memory: one launch keeps the row loads and the zero stores in flight together, where a
// memset before a warp-per-row kernel left most lanes idle (H100: 133 us for D alone at
// d = 64 and 16k rows x 32 heads, 1.0 TB/s).
constexpr int kDotThreads = 256;
template <class Element, int kLanesPerRow>
__global__ void __launch_bounds__(kDotThreads)
    backward_dot_kernel(const BackwardKernelParams p, float4* cleared, std::int64_t cleared_vectors) {
  static_assert(kLanesPerRow == 8 || kLanesPerRow == 16 || kLanesPerRow == 32, "a row's lanes share one warp");
  const AttentionArgs& a = p.attn;
  const std::int64_t thread = static_cast<std::int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  const std::int64_t item = thread / kLanesPerRow;
  const int col = 8 * static_cast<int>(threadIdx.x % kLanesPerRow);
  const bool active = item < p.rows_q * a.heads_q;
  std::int64_t row = 0;
  int head = 0;
  uint4 x = make_uint4(0, 0, 0, 0), y = make_uint4(0, 0, 0, 0);
  if (active) {
    row = item / a.heads_q;
    head = static_cast<int>(item % a.heads_q);
    const PackedRow at = unpack_row(a, row);
    if (col < a.head_dim) {
      x = *reinterpret_cast<const uint4*>(row_pointer<const Element>(p.dout, at.batch, at.row, head) + col);
      // O is not read again (dO is, by the main kernel): evict it first.
      y = __ldcs(reinterpret_cast<const uint4*>(row_pointer<const Element>(a.out, at.batch, at.row, head) + col));
    }
  }
  const std::int64_t threads = static_cast<std::int64_t>(gridDim.x) * blockDim.x;
  for (std::int64_t v = thread; v < cleared_vectors; v += threads) cleared[v] = make_float4(0.0f, 0.0f, 0.0f, 0.0f);
  const Element* ex = reinterpret_cast<const Element*>(&x);
  const Element* ey = reinterpret_cast<const Element*>(&y);
  float sum = 0.0f;
#pragma unroll
  for (int e = 0; e < 8; ++e) sum += to_float(ex[e]) * to_float(ey[e]);
  // Lanes of one row are aligned groups of kLanesPerRow: the XOR offsets stay inside them.
#pragma unroll
  for (int offset = kLanesPerRow / 2; offset > 0; offset /= 2) sum += __shfl_xor_sync(0xFFFFFFFFu, sum, offset);
  if (active && col == 0) p.dout_dot_out[head * p.rows_q + row] = sum;
}

// The dQ accumulator, fp32, unscaled. Per head, each sequence's rows start at a multiple of
// 16 (dq_accum_row0), and every 16-row x 8-column tile of a row block is stored in the mma
// accumulator's own order: lane l = 4g + t holds (row g, columns 2t, 2t+1) and (row g + 8, the
// same columns) at 4l..4l+3. A warp's add of one tile is then one 16-byte atomic per lane,
// 512 contiguous bytes, at a compile-time offset from one pointer: the adds are what the
// memory pipe is busiest with (4-byte adds instead of 8-byte ones cost 18-37 %, H200).
__host__ __device__ inline std::int64_t dq_accum_rows(const BackwardKernelParams& p) {
  return p.rows_q + 16 * (static_cast<std::int64_t>(p.attn.batch) + 1);
}
__device__ __forceinline__ std::int64_t dq_accum_row0(const SequenceSpan& span, int b) {
  return (span.q_packed0 + 16 * static_cast<std::int64_t>(b) + 15) / 16 * 16;
}

// Eight columns of two rows of a dQ accumulator in mma register order: lanes 4g..4g+3
// (`lanes`, 64 contiguous bytes) hold columns 2t, 2t+1 of row g in elements 0, 1 and of row
// g + 8 in elements 2, 3. Each row is scaled, converted and written with one 16-byte store
// (a null row is past the sequence).
template <class Element>
__device__ __forceinline__ void convert_accumulator_rows(const float4* lanes, float scale, Element* row_g,
                                                         Element* row_g8) {
  float4 x[4];
#pragma unroll
  for (int t = 0; t < 4; ++t) x[t] = __ldcs(lanes + t);  // read once
  if (row_g != nullptr)
    *reinterpret_cast<uint4*>(row_g) = make_uint4(
        ptx::pack2<Element>(x[0].x * scale, x[0].y * scale), ptx::pack2<Element>(x[1].x * scale, x[1].y * scale),
        ptx::pack2<Element>(x[2].x * scale, x[2].y * scale), ptx::pack2<Element>(x[3].x * scale, x[3].y * scale));
  if (row_g8 != nullptr)
    *reinterpret_cast<uint4*>(row_g8) = make_uint4(
        ptx::pack2<Element>(x[0].z * scale, x[0].w * scale), ptx::pack2<Element>(x[1].z * scale, x[1].w * scale),
        ptx::pack2<Element>(x[2].z * scale, x[2].w * scale), ptx::pack2<Element>(x[3].z * scale, x[3].w * scale));
}

// dQ = scale * accumulator; one block per (16 query rows, head, sequence). An item is 8
// columns of rows g and g + 8 (convert_accumulator_rows): a warp's items read 2 KiB in one
// piece.
template <int kHeadDim, class Element>
__global__ void backward_dq_convert_kernel(const BackwardKernelParams p) {
  const AttentionArgs& a = p.attn;
  const int b = static_cast<int>(blockIdx.z), head = static_cast<int>(blockIdx.y);
  const SequenceSpan span = sequence_span(a, b);
  const int row0 = 16 * static_cast<int>(blockIdx.x);
  if (row0 >= span.seq_q) return;
  const float* const block = p.dq_accum + (head * dq_accum_rows(p) + dq_accum_row0(span, b) + row0) * kHeadDim;
  const int tiles = (a.head_dim + 7) / 8;
  const int rows_valid = span.seq_q - row0;
  for (int item = static_cast<int>(threadIdx.x); item < 8 * tiles; item += static_cast<int>(blockDim.x)) {
    const int g = item % 8, tile = item / 8;
    Element* const row = row_pointer<Element>(p.dq, b, span.q_row0 + row0 + g, head) + tile * 8;
    convert_accumulator_rows<Element>(reinterpret_cast<const float4*>(block + tile * 128 + 16 * g), a.scale,
                                      g < rows_valid ? row : nullptr,
                                      g + 8 < rows_valid ? row + 8 * p.dq.row_stride : nullptr);
  }
}

// Varlen: packed key rows after the last sequence belong to no sequence; their gradient is 0.
template <class Element>
__global__ void backward_zero_unused_keys_kernel(const BackwardKernelParams p) {
  const AttentionArgs& a = p.attn;
  const int chunks = a.head_dim / 8;
  const std::int64_t item = static_cast<std::int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (item >= p.rows_k * a.heads_kv * chunks) return;
  const std::int64_t row = item / (static_cast<std::int64_t>(a.heads_kv) * chunks);
  if (row < a.cu_seqlens_k[a.batch]) return;
  const int head = static_cast<int>((item / chunks) % a.heads_kv);
  const int col = static_cast<int>(item % chunks) * 8;
  const uint4 zero = make_uint4(0, 0, 0, 0);
  *reinterpret_cast<uint4*>(row_pointer<Element>(p.dk, 0, row, head) + col) = zero;
  *reinterpret_cast<uint4*>(row_pointer<Element>(p.dv, 0, row, head) + col) = zero;
}

// Deterministic dQ: the CTAs of one (sequence, head) add into a query block in key-block order.
__device__ __forceinline__ void wait_for_turn(const int* semaphore, int turn) {
  int seen;
  do {
    asm volatile("ld.acquire.gpu.global.s32 %0, [%1];\n" : "=r"(seen) : "l"(semaphore) : "memory");
  } while (seen != turn);
}
__device__ __forceinline__ void pass_turn(int* semaphore, int next_turn) {
  asm volatile("st.release.gpu.global.s32 [%0], %1;\n" ::"l"(semaphore), "r"(next_turn) : "memory");
}

// kExtras: softcap, bias, ALiBi or dropout present (a separate instantiation keeps the
// common kernel's loop small).
template <int kHeadDim, class Element, int kVariant, bool kExtras>
__global__ void __launch_bounds__(BackwardKernelTraits<kHeadDim, Element, kVariant>::kThreads, 1)
    backward_main_kernel(const BackwardKernelParams p) {
  using Traits = BackwardKernelTraits<kHeadDim, Element, kVariant>;
  constexpr int kBlockM = Traits::kBlockM, kBlockN = Traits::kBlockN, kThreads = Traits::kThreads;
  constexpr float kLog2e = 1.4426950408889634f;
  const AttentionArgs& a = p.attn;

  const bool heads_fastest = Traits::heads_fastest(a, kExtras);
  const int n_block = static_cast<int>(heads_fastest ? blockIdx.y : blockIdx.x);
  const int kv_head = static_cast<int>(heads_fastest ? blockIdx.x : blockIdx.y);
  const int b = static_cast<int>(blockIdx.z);
  const SequenceSpan span = sequence_span(a, b);
  const int n0 = n_block * kBlockN;
  if (n0 >= span.seq_k) return;

  const detail::BandMask mask{span.seq_q, span.seq_k, a.window_left, a.window_right};
  // Query rows whose band reaches this key block: [row_begin, row_end). Row i sees columns
  // up to i + shift + window_right and from i + shift - window_left on.
  const std::int64_t shift = static_cast<std::int64_t>(span.seq_k) - span.seq_q;
  std::int64_t row_begin = 0, row_end = span.seq_q;
  if (a.window_right >= 0) row_begin = max(row_begin, n0 - shift - a.window_right);
  if (a.window_left >= 0) row_end = min(row_end, n0 + kBlockN - shift + a.window_left);
  const int m_begin = static_cast<int>(row_begin / kBlockM);
  const int m_end = row_end > row_begin ? static_cast<int>((row_end + kBlockM - 1) / kBlockM) : m_begin;
  const int group = a.heads_q / a.heads_kv;
  const int blocks_per_head = m_end - m_begin;
  // Query blocks whose scores against this key block are all allowed (no mask needed).
  const detail::RowBlockRange unmasked = detail::unmasked_row_blocks(mask, n0, n0 + kBlockN, kBlockM);
  const int iterations = group * blocks_per_head;

  extern __shared__ __align__(16) unsigned char smem[];
  using RowTile = typename Traits::RowTile;
  using KeyTile = typename Traits::KeyTile;
  using ScoreTile = typename Traits::ScoreTile;
  constexpr int kRowTileElements = RowTile::kBytes / static_cast<int>(sizeof(Element));
  constexpr int kKeyTileElements = KeyTile::kBytes / static_cast<int>(sizeof(Element));
  Element* const smem_base = reinterpret_cast<Element*>(smem);
  const KeyTile s_k{smem_base};
  const KeyTile s_v{smem_base + kKeyTileElements};
  Element* const rows_base = smem_base + 2 * kKeyTileElements;
  // Buffers: Q0, (Q1,) dO0, (dO1) (selected by pointer, so no tile array lands in local memory).
  constexpr int kRowBuffers = Traits::kRowBuffers;
  const auto q_tile = [&](int buffer) { return RowTile{rows_base + buffer * kRowTileElements}; };
  const auto do_tile = [&](int buffer) { return RowTile{rows_base + (kRowBuffers + buffer) * kRowTileElements}; };
  const ScoreTile s_p{rows_base + 2 * kRowBuffers * kRowTileElements};
  const ScoreTile s_ds{s_p.data + ScoreTile::kBytes / static_cast<int>(sizeof(Element))};
  // Per buffer: lse of the block's rows, then D.
  float* const stats_base = reinterpret_cast<float*>(s_ds.data + ScoreTile::kBytes / static_cast<int>(sizeof(Element)));
  const auto stats = [&](int buffer) { return stats_base + buffer * 2 * kBlockM; };

  const int rows_k_valid = span.seq_k - n0;
  load_tile_async<kThreads>(s_k, GlobalTile<Element>{row_pointer<const Element>(a.k, b, span.k_row0 + n0, kv_head),
                                                     a.k.row_stride, rows_k_valid, a.head_dim});
  load_tile_async<kThreads>(s_v, GlobalTile<Element>{row_pointer<const Element>(a.v, b, span.k_row0 + n0, kv_head),
                                                     a.v.row_stride, rows_k_valid, a.head_dim});

  auto load_query_block = [&](int iteration, int buffer) {
    const int head = kv_head * group + iteration / blocks_per_head;
    const int m0 = (m_begin + iteration % blocks_per_head) * kBlockM;
    const std::int64_t row = span.q_row0 + m0;
    load_tile_async<kThreads>(q_tile(buffer), GlobalTile<Element>{row_pointer<const Element>(a.q, b, row, head),
                                                               a.q.row_stride, span.seq_q - m0, a.head_dim});
    load_tile_async<kThreads>(do_tile(buffer), GlobalTile<Element>{row_pointer<const Element>(p.dout, b, row, head),
                                                                p.dout.row_stride, span.seq_q - m0, a.head_dim});
    // The row statistics travel with the block (rows past the sequence read as 0; no mask
    // lets their P be computed).
    const int thread = static_cast<int>(threadIdx.x);
    if (thread < 2 * kBlockM) {
      const bool dot = thread >= kBlockM;
      const int r = dot ? thread - kBlockM : thread;
      const bool valid = m0 + r < span.seq_q;
      const float* const from =
          dot ? p.dout_dot_out + head * p.rows_q + span.q_packed0 + m0 + r
              : a.lse + b * a.lse_batch_stride + head * a.lse_head_stride + (row + r) * a.lse_row_stride;
      ptx::cp_async_4(stats(buffer) + thread, valid ? from : a.lse, valid);
    }
  };
  if (iterations > 0) load_query_block(0, 0);
  ptx::cp_async_commit();

  const int warp = static_cast<int>(threadIdx.x / 32);
  const int g = lane_group(), t = lane_in_group();
  constexpr int kSdpMTiles = Traits::kSdpRows / 16, kSdpNTiles = Traits::kSdpCols / 8;
  constexpr int kDkvMTiles = Traits::kDkvRows / 16, kDkvNTiles = Traits::kDkvCols / 8;
  constexpr int kDqMTiles = Traits::kDqRows / 16, kDqNTiles = Traits::kDqCols / 8;
  const int sdp_row0 = (warp % Traits::kSdpWarpsM) * Traits::kSdpRows;
  const int sdp_col0 = (warp / Traits::kSdpWarpsM) * Traits::kSdpCols;
  const int dkv_row0 = (warp % Traits::kDkvWarpsN) * Traits::kDkvRows;
  const int dkv_col0 = (warp / Traits::kDkvWarpsN) * Traits::kDkvCols;
  const int dq_row0 = (warp % Traits::kDqWarpsM) * Traits::kDqRows;
  const int dq_col0 = (warp / Traits::kDqWarpsM) * Traits::kDqCols;
  const bool dropout = a.dropout_threshold != 0;
  const float scale_log2 = a.scale * kLog2e;

  AccumulatorTile<kDkvMTiles, kDkvNTiles> dk_acc, dv_acc;
  dk_acc.fill(0.0f);
  dv_acc.fill(0.0f);


  for (int iteration = 0; iteration < iterations; ++iteration) {
    const int buffer = Traits::kDoubleBuffer ? iteration & 1 : 0;
    const int head = kv_head * group + iteration / blocks_per_head;
    const int m_block = m_begin + iteration % blocks_per_head;
    const int m0 = m_block * kBlockM;

    ptx::cp_async_wait<0>();
    __syncthreads();  // Q/dO of this block landed; every warp is done with the previous block

    // Double-buffered, the next block's Q, dO and row statistics load during this whole
    // iteration (the other buffer's last readers finished the previous iteration).
    if constexpr (Traits::kDoubleBuffer) {
      if (iteration + 1 < iterations) load_query_block(iteration + 1, buffer ^ 1);
      ptx::cp_async_commit();
    }
    // This warp's rows' lse and D. The plain kernel takes lse in base 2 (P = exp2(s * scale
    // * log2(e) - lse * log2(e)), one FMA per score); it computes P only where the band
    // allows a column, and such a row's lse is finite. With a bias a row may see only -inf
    // logits (lse = -inf): it becomes +inf, so P = 0 without a NaN.
    float row_lse[kSdpMTiles][2], row_dot[kSdpMTiles][2];
#pragma unroll
    for (int mi = 0; mi < kSdpMTiles; ++mi)
#pragma unroll
      for (int half = 0; half < 2; ++half) {
        const int r = sdp_row0 + 16 * mi + 8 * half + g;
        const float lse = stats(buffer)[r];
        if constexpr (kExtras) row_lse[mi][half] = lse == -INFINITY ? INFINITY : lse;
        else row_lse[mi][half] = lse * kLog2e;
        row_dot[mi][half] = stats(buffer)[kBlockM + r];
      }
    const RowTile s_q = q_tile(buffer), s_do = do_tile(buffer);

    // S = Q K^T and dP = dO V^T on this warp's (kSdpRows x kSdpCols) tile.
    AccumulatorTile<kSdpMTiles, kSdpNTiles> s_acc, dp_acc;
    s_acc.fill(0.0f);
    dp_acc.fill(0.0f);
    const auto rows_operand = [&](const RowTile& tile) {
      return [&tile, sdp_row0](int step, auto& a) {
#pragma unroll
        for (int mi = 0; mi < kSdpMTiles; ++mi) load_a_operand(tile, sdp_row0 + 16 * mi, 16 * step, a[mi]);
      };
    };
    const auto keys_operand = [&](const KeyTile& tile) {
      return [&tile, sdp_col0](int step, auto& b) {
#pragma unroll
        for (int nj = 0; nj < kSdpNTiles / 2; ++nj) load_b_operand_pair(tile, sdp_col0 + 16 * nj, 16 * step, b[nj]);
      };
    };
    // Both products at once where registers allow (small dK/dV accumulators, 64-row blocks).
    if constexpr (kHeadDim <= 64 && kBlockM <= 64) {
      warp_gemm_pair<Element, kHeadDim / 16, Traits::kOperandPrefetch>(s_acc, rows_operand(s_q), keys_operand(s_k),
                                                                        dp_acc, rows_operand(s_do), keys_operand(s_v));
    } else {
      warp_gemm<Element, kHeadDim / 16, Traits::kOperandPrefetch>(s_acc, rows_operand(s_q), keys_operand(s_k));
      warp_gemm<Element, kHeadDim / 16, Traits::kOperandPrefetch>(dp_acc, rows_operand(s_do), keys_operand(s_v));
    }

    // P (dropped and rescaled, for dV) and dS, element by element, into shared memory:
    //   dS = P * (dP * Z - D) * (1 - tanh^2 when capped),  Z = keep / (1 - p).
    // With the extras P = exp(logit - lse) subtracts before scaling to log2 units; the plain
    // kernel's one FMA (as the Hopper kernels) keeps the product exact inside the FMA, and
    // the large-logit backward test holds it to the same tolerance.
    const bool tile_inside_band = unmasked.contains(m_block);
    LogitTransform logit{a.scale, a.softcap, BiasSlice{}, 0.0f};
    std::uint32_t batch_head = 0;
    if constexpr (kExtras) {
      if (a.bias != nullptr) {
        const std::int64_t offset = b * a.bias_batch_stride + head * a.bias_head_stride;
        logit.bias.data = a.bias_is_float32 ? static_cast<const void*>(static_cast<const float*>(a.bias) + offset)
                                            : static_cast<const void*>(static_cast<const Element*>(a.bias) + offset);
        logit.bias.is_float32 = a.bias_is_float32;
        logit.bias.row_stride = a.bias_row_stride;
        logit.bias.col_stride = a.bias_col_stride;
      }
      if (a.alibi_slopes != nullptr)
        logit.alibi_slope = a.alibi_slopes[b * a.alibi_batch_stride + head * a.alibi_head_stride];
      batch_head = static_cast<std::uint32_t>(b * a.heads_q + head);
    }
    // Two unrolled copies, so tiles inside the band skip the per-element mask. A row's
    // allowed columns are one interval [first, end) (empty past the sequence's end).
    const auto scores_to_p_and_ds = [&](auto masked_tag) {
      constexpr bool kMasked = decltype(masked_tag)::value;
      int col_first[kSdpMTiles][2], col_end[kSdpMTiles][2];
      if constexpr (kMasked) {
#pragma unroll
        for (int mi = 0; mi < kSdpMTiles; ++mi)
#pragma unroll
          for (int half = 0; half < 2; ++half) {
            const int i = m0 + sdp_row0 + 16 * mi + 8 * half + g;
            col_first[mi][half] = static_cast<int>(mask.first_col(i));
            col_end[mi][half] = i < span.seq_q ? static_cast<int>(mask.end_col(i)) : 0;
          }
      }
#pragma unroll
      for (int mi = 0; mi < kSdpMTiles; ++mi)
#pragma unroll
        for (int ni = 0; ni < kSdpNTiles; ++ni)
#pragma unroll
          for (int half = 0; half < 2; ++half) {
            const int row = sdp_row0 + 16 * mi + 8 * half + g;
            const int col = sdp_col0 + 8 * ni + 2 * t;
            const int i = m0 + row;
            bool keep[2] = {true, true};
            if constexpr (kExtras) {
              if (dropout) {
                // Columns col, col + 1 share one Philox group (col is even, n0 a multiple of 4).
                const detail::Philox4 bits = detail::dropout_bits(a.dropout_seed, a.dropout_offset, batch_head,
                                                                  static_cast<std::uint32_t>(i),
                                                                  static_cast<std::uint32_t>((n0 + col) >> 2));
#pragma unroll
                for (int e = 0; e < 2; ++e)
                  keep[e] = detail::philox_word(bits, ((n0 + col) & 3) + e) >= a.dropout_threshold;
              }
            }
            float p_dropped[2], ds[2];
#pragma unroll
            for (int e = 0; e < 2; ++e) {
              const int j = n0 + col + e;
              const float qk = s_acc.value[mi][ni][2 * half + e];
              const float dp = dp_acc.value[mi][ni][2 * half + e];
              const float lse = row_lse[mi][half];
              float prob = 0.0f;
              if (!kMasked || (j >= col_first[mi][half] && j < col_end[mi][half])) {
                if constexpr (kExtras) prob = fast_exp2((logit.template operator()<Element>(qk, mask, i, j) - lse) * kLog2e);
                else prob = fast_exp2(fmaf(qk, scale_log2, -lse));
              }
              if constexpr (kExtras) {
                float chain = 1.0f;
                if (a.softcap > 0.0f) {
                  const float capped = tanhf(qk * a.scale / a.softcap);
                  chain = 1.0f - capped * capped;
                }
                const float rescale = keep[e] ? a.dropout_rescale : 0.0f;
                p_dropped[e] = prob * rescale;
                ds[e] = prob * (dp * rescale - row_dot[mi][half]) * chain;
              } else {
                p_dropped[e] = prob;
                ds[e] = prob * (dp - row_dot[mi][half]);
              }
            }
            *reinterpret_cast<std::uint32_t*>(s_p.at(row, col)) = ptx::pack2<Element>(p_dropped[0], p_dropped[1]);
            *reinterpret_cast<std::uint32_t*>(s_ds.at(row, col)) = ptx::pack2<Element>(ds[0], ds[1]);
          }
    };
    if (tile_inside_band) scores_to_p_and_ds(std::false_type{});
    else scores_to_p_and_ds(std::true_type{});
    __syncthreads();  // P and dS complete

    // dV += P^T dO and dK += dS^T Q on this warp's (kDkvRows x kDkvCols) tile.
    const auto scores_transposed_operand = [&](const ScoreTile& tile) {
      return [&tile, dkv_row0](int step, auto& a) {
#pragma unroll
        for (int mi = 0; mi < kDkvMTiles; ++mi) load_a_operand_trans(tile, 16 * step, dkv_row0 + 16 * mi, a[mi]);
      };
    };
    const auto rows_transposed_operand = [&](const RowTile& tile) {
      return [&tile, dkv_col0](int step, auto& b) {
#pragma unroll
        for (int nj = 0; nj < kDkvNTiles / 2; ++nj) load_b_operand_pair_trans(tile, 16 * step, dkv_col0 + 16 * nj, b[nj]);
      };
    };
    warp_gemm_pair<Element, kBlockM / 16, Traits::kOperandPrefetch>(
        dv_acc, scores_transposed_operand(s_p), rows_transposed_operand(s_do), dk_acc, scores_transposed_operand(s_ds),
        rows_transposed_operand(s_q));
    if constexpr (!Traits::kDoubleBuffer) {
      __syncthreads();  // every warp has read Q and dO: the one buffer can take the next block
      if (iteration + 1 < iterations) load_query_block(iteration + 1, 0);
      ptx::cp_async_commit();
    }

    // dQ (unscaled) = dS K on this warp's (kDqRows x kDqCols) tile.
    AccumulatorTile<kDqMTiles, kDqNTiles> dq_acc;
    dq_acc.fill(0.0f);
    warp_gemm<Element, kBlockN / 16, Traits::kOperandPrefetch>(
        dq_acc,
        [&](int step, auto& a) {
#pragma unroll
          for (int mi = 0; mi < kDqMTiles; ++mi) load_a_operand(s_ds, dq_row0 + 16 * mi, 16 * step, a[mi]);
        },
        [&](int step, auto& b) {
#pragma unroll
          for (int nj = 0; nj < kDqNTiles / 2; ++nj) load_b_operand_pair_trans(s_k, 16 * step, dq_col0 + 16 * nj, b[nj]);
        });

    // This lane's adds: one 16-byte add per 16 x 8 tile, at a compile-time offset from dq_lane
    // (layout: dq_accum_rows). Whole 16-row tiles past the sequence are skipped: their rows
    // belong to the next sequence. Rows past it inside a kept tile add zeros (P = 0 there).
    float* const dq_lane = p.dq_accum +
                           (head * dq_accum_rows(p) + dq_accum_row0(span, b) + m0 + dq_row0) * kHeadDim +
                           (dq_col0 / 8) * 128 + 4 * (threadIdx.x % 32);
    int* const semaphore =
        p.deterministic ? p.dq_semaphore + (static_cast<std::int64_t>(b) * a.heads_q + head) * p.m_blocks + m_block
                        : nullptr;
    const auto for_each_dq_quad = [&](auto add) {
#pragma unroll
      for (int mi = 0; mi < kDqMTiles; ++mi)
        if (m0 + dq_row0 + 16 * mi < span.seq_q)
#pragma unroll
          for (int ni = 0; ni < kDqNTiles; ++ni) {
            const float* v = dq_acc.value[mi][ni];
            add(dq_lane + mi * 16 * kHeadDim + ni * 128, make_float4(v[0], v[1], v[2], v[3]));
          }
    };
    if (p.deterministic) {
      if (threadIdx.x == 0) wait_for_turn(semaphore, n_block);
      __syncthreads();
      // The previous key block's sums are in L2 (published with release/acquire).
      for_each_dq_quad([](float* dst, float4 x) {
        const float4 old = __ldcg(reinterpret_cast<const float4*>(dst));
        __stcg(reinterpret_cast<float4*>(dst), make_float4(old.x + x.x, old.y + x.y, old.z + x.z, old.w + x.w));
      });
      __threadfence();
      __syncthreads();
      if (threadIdx.x == 0) pass_turn(semaphore, n_block + 1);
    } else {
      for_each_dq_quad([](float* dst, float4 x) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
        if constexpr (Traits::kDqByReduction) ptx::red_add_v4(dst, x);
        else atomicAdd(reinterpret_cast<float4*>(dst), x);
#else
        atomicAdd(dst, x.x);
        atomicAdd(dst + 1, x.y);
        atomicAdd(dst + 2, x.z);
        atomicAdd(dst + 3, x.w);
#endif
      });
    }
  }
  ptx::cp_async_wait<0>();  // a key block that meets no query block still loaded K and V

  // dK = scale * dS^T Q, dV = P^T dO.
  Element* const dk = row_pointer<Element>(p.dk, b, span.k_row0 + n0, kv_head);
  Element* const dv = row_pointer<Element>(p.dv, b, span.k_row0 + n0, kv_head);
  const auto for_each_dkv_pair = [&](auto store) {
#pragma unroll
    for (int mi = 0; mi < kDkvMTiles; ++mi)
#pragma unroll
      for (int ni = 0; ni < kDkvNTiles; ++ni)
#pragma unroll
        for (int half = 0; half < 2; ++half) {
          const float* const k_values = dk_acc.value[mi][ni] + 2 * half;
          const float* const v_values = dv_acc.value[mi][ni] + 2 * half;
          store(dkv_row0 + 16 * mi + 8 * half + g, dkv_col0 + 8 * ni + 2 * t,
                ptx::pack2<Element>(k_values[0] * a.scale, k_values[1] * a.scale),
                ptx::pack2<Element>(v_values[0], v_values[1]));
        }
  };
  if constexpr (Traits::kStagedEpilogue) {
    __syncthreads();  // every warp is done reading K and V (the last dQ product)
    for_each_dkv_pair([&](int row, int col, std::uint32_t k_pair, std::uint32_t v_pair) {
      *reinterpret_cast<std::uint32_t*>(s_k.at(row, col)) = k_pair;
      *reinterpret_cast<std::uint32_t*>(s_v.at(row, col)) = v_pair;
    });
    __syncthreads();
    const int thread = static_cast<int>(threadIdx.x);
    store_tile<kThreads>(s_k, 0, kBlockN, dk, p.dk.row_stride, rows_k_valid, a.head_dim, thread);
    store_tile<kThreads>(s_v, 0, kBlockN, dv, p.dv.row_stride, rows_k_valid, a.head_dim, thread);
  } else {
    for_each_dkv_pair([&](int row, int col, std::uint32_t k_pair, std::uint32_t v_pair) {
      if (row >= rows_k_valid || col >= a.head_dim) return;
      *reinterpret_cast<std::uint32_t*>(dk + row * p.dk.row_stride + col) = k_pair;
      *reinterpret_cast<std::uint32_t*>(dv + row * p.dv.row_stride + col) = v_pair;
    });
  }

  // Deterministic mode: pass the turn on the query blocks this key block does not touch,
  // so that later key blocks of the sequence can add theirs. Waiting only on earlier key
  // blocks (launched earlier) cannot deadlock.
  if (p.deterministic && threadIdx.x == 0) {
    const int m_blocks_seq = (span.seq_q + kBlockM - 1) / kBlockM;
    for (int head = kv_head * group; head < (kv_head + 1) * group; ++head) {
      int* const semaphores = p.dq_semaphore + (static_cast<std::int64_t>(b) * a.heads_q + head) * p.m_blocks;
      for (int m = 0; m < m_blocks_seq; ++m) {
        if (m >= m_begin && m < m_end) continue;
        wait_for_turn(semaphores + m, n_block);
        pass_turn(semaphores + m, n_block + 1);
      }
    }
  }
}

}  // namespace tileflash::cuda::sm80
