// The Ampere-class FlashAttention-2 forward kernel (mma.sync m16n8k16, ldmatrix, cp.async).
//
// One block computes kBlockM query rows of one (batch, head): it walks the key tiles the
// band mask leaves (last to first, so the masked boundary tiles come first and the mask
// test is skipped on the rest), keeps the scores and the output in registers, and writes
// the output once, normalised, through shared memory with 16-byte stores.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

#include "common/attention_math.h"
#include "cuda/common/dropout.cuh"
#include "cuda/common/fragment.cuh"
#include "cuda/common/logits.cuh"
#include "cuda/common/mask.cuh"
#include "cuda/common/ptx.cuh"
#include "cuda/common/softmax.cuh"
#include "cuda/common/tile_io.cuh"
#include "cuda/common/tile_scheduler.cuh"
#include "cuda/sm80/fwd_launch.h"
#include "cuda/sm80/fwd_tile.h"
#include "cuda/sm80/launch_args.h"

namespace tileflash::cuda::sm80 {

// kLogitExtras: softcap, bias, ALiBi, dropout or a non-positive scale are present, and the
// logits are computed element by element in natural units; otherwise the scale is folded
// into the exponent (one FFMA per score) and only boundary tiles are masked.
template <class Tile, class Element, bool kLogitExtras, bool kHeavyFirst>
__global__ void __launch_bounds__(Tile::kThreads, Tile::kMinBlocksPerSm) forward_kernel(const AttentionArgs args) {
  constexpr int kBlockM = Tile::kBlockM, kBlockN = Tile::kBlockN, kHeadDim = Tile::kHeadDim;
  constexpr int kMTiles = Tile::kMTiles, kNTiles = Tile::kNTiles, kDTiles = Tile::kDTiles;
  // Q K^T with every k-step's operands requested one step ahead (two register sets) or
  // step by step, left to ptxas: each instantiation's loop is scheduled its own way at
  // ~250 registers. Ahead measured +10 to +12 % for the 128 x 64 tile's heavy-first
  // (banded) kernel and -1 to -3 % for the other plain kernels (H200, forced, the whole
  // grid; docs/perf-notes.md).
  constexpr bool kPrefetchScoreOperands = kHeavyFirst && kHeadDim == 128 && kBlockN == 64;
  using QTile = SmemTile<Element, kBlockM, kHeadDim>;
  using KVTile = SmemTile<Element, kBlockN, kHeadDim>;

  // Q, then kKVStages stages of (K, V). Two: the next key tile loads while this one is
  // used. One (FA2's d = 256 schedule, half the shared memory so two blocks share an SM):
  // V of this tile loads under Q K^T, K of the next one under P V.
  constexpr int kStages = Tile::kKVStages;
  extern __shared__ __align__(16) unsigned char shared_bytes[];
  const QTile q_smem{reinterpret_cast<Element*>(shared_bytes)};
  Element* const kv_smem = q_smem.data + kBlockM * QTile::kStride;
  constexpr int kKVTileElements = kBlockN * KVTile::kStride;
  const auto k_smem = [&](int stage) { return KVTile{kv_smem + (2 * stage) * kKVTileElements}; };
  const auto v_smem = [&](int stage) { return KVTile{kv_smem + (2 * stage + 1) * kKVTileElements}; };

  const int head = scheduled_head<kHeavyFirst>();
  const int batch = scheduled_batch<kHeavyFirst>();
  const SequenceSlice seq = sequence_slice(args, batch);
  const int m_block = scheduled_m_block<kHeavyFirst>(args.window_right >= 0);
  const std::int64_t row_begin = static_cast<std::int64_t>(m_block) * kBlockM;
  if (row_begin >= seq.seq_q) return;
  const int rows_valid = static_cast<int>(seq.seq_q - row_begin < kBlockM ? seq.seq_q - row_begin : kBlockM);

  const detail::BandMask mask{seq.seq_q, seq.seq_k, args.window_left, args.window_right};
  const KeyTileRange keys = key_tiles_for_rows<kBlockN>(mask, row_begin, row_begin + rows_valid);
  const int kv_head = head / (args.heads_q / args.heads_kv);
  const int head_dim = args.head_dim;

  const int warp = static_cast<int>(threadIdx.x / 32);
  const int lane = static_cast<int>(threadIdx.x % 32);
  const int warp_row0 = warp * Tile::kRowsPerWarp;

  // The logits transform, in natural units (extras) or folded into the exponent.
  LogitTransform logits{args.scale, args.softcap, {}, 0.0f};
  DropoutStream dropout{args.dropout_seed, args.dropout_offset, args.dropout_threshold};
  if constexpr (kLogitExtras) {
    if (args.bias != nullptr) {
      const std::int64_t offset = batch * args.bias_batch_stride + head * args.bias_head_stride;
      const auto element_bytes = args.bias_is_float32 ? sizeof(float) : sizeof(Element);
      logits.bias = BiasSlice{static_cast<const char*>(args.bias) + offset * static_cast<std::int64_t>(element_bytes),
                              args.bias_is_float32, args.bias_row_stride, args.bias_col_stride};
    }
    if (args.alibi_slopes != nullptr)
      logits.alibi_slope = args.alibi_slopes[batch * args.alibi_batch_stride + head * args.alibi_head_stride];
  }
  const float to_log2 = kLogitExtras ? kLog2e : args.scale * kLog2e;

  AccumulatorTile<kMTiles, kDTiles> out;
  out.fill(0.0f);
  // The lazy rescale: +1-3 % above d = 64, -0.3 to -2 % at 64 (H200, sm80 forced). The
  // pairwise row reductions: 0 to +2 % at d = 64, -0.6 to -4 % at d = 128.
  OnlineSoftmax<kMTiles, (kHeadDim > 64 ? kLazyRescaleLag : 0), (kHeadDim <= 64)> softmax;
  softmax.init();

  if (!keys.empty()) {
    const Element* const k_rows = row_pointer<Element>(args.k, batch, seq.k_begin, kv_head);
    const Element* const v_rows = row_pointer<Element>(args.v, batch, seq.k_begin, kv_head);
    const auto key_tile = [&](const Element* rows, std::int64_t row_stride, int n) {
      const std::int64_t first = static_cast<std::int64_t>(n) * kBlockN;
      const int valid = static_cast<int>(seq.seq_k - first < kBlockN ? seq.seq_k - first : kBlockN);
      return GlobalTile<Element>{rows + first * row_stride, row_stride, valid, head_dim};
    };
    const Element* const q_rows = row_pointer<Element>(args.q, batch, seq.q_begin + row_begin, head);
    load_tile_async<Tile::kThreads>(q_smem, GlobalTile<Element>{q_rows, args.q.row_stride, rows_valid, head_dim});
    load_tile_async<Tile::kThreads>(k_smem(0), key_tile(k_rows, args.k.row_stride, keys.end - 1));
    if constexpr (kStages == 2) load_tile_async<Tile::kThreads>(v_smem(0), key_tile(v_rows, args.v.row_stride, keys.end - 1));
    ptx::cp_async_commit();

    int stage = 0;
    for (int n = keys.end - 1; n >= keys.begin; --n, stage = (stage + 1) % kStages) {
      // Two stages: tile n has landed, and every warp is done with tile n + 1, whose stage
      // the next load reuses: one barrier per tile, and each load overlaps a whole tile of
      // work. One stage: K of tile n has landed and every warp is done with V of tile n + 1.
      ptx::cp_async_wait<0>();
      __syncthreads();
      if constexpr (kStages == 2) {
        if (n > keys.begin) {
          load_tile_async<Tile::kThreads>(k_smem(stage ^ 1), key_tile(k_rows, args.k.row_stride, n - 1));
          load_tile_async<Tile::kThreads>(v_smem(stage ^ 1), key_tile(v_rows, args.v.row_stride, n - 1));
          ptx::cp_async_commit();
        }
      } else {
        load_tile_async<Tile::kThreads>(v_smem(0), key_tile(v_rows, args.v.row_stride, n));
        ptx::cp_async_commit();
      }
      const KVTile k_tile = k_smem(stage), v_tile = v_smem(stage);

      AccumulatorTile<kMTiles, kNTiles> scores;
      scores.fill(0.0f);
      if constexpr (kPrefetchScoreOperands) {
        std::uint32_t a[2][kMTiles][4], b[2][kNTiles / 2][2][2];
        const auto load_step = [&](int ks, int set) {
#pragma unroll
          for (int mi = 0; mi < kMTiles; ++mi) load_a_operand(q_smem, warp_row0 + 16 * mi, 16 * ks, a[set][mi]);
#pragma unroll
          for (int np = 0; np < kNTiles / 2; ++np) load_b_operand_pair(k_tile, 16 * np, 16 * ks, b[set][np]);
        };
        load_step(0, 0);
#pragma unroll
        for (int ks = 0; ks < kHeadDim / 16; ++ks) {
          if (ks + 1 < kHeadDim / 16) load_step(ks + 1, (ks + 1) & 1);
#pragma unroll
          for (int np = 0; np < kNTiles / 2; ++np) mma_n_tile_pair<Element>(scores, np, a[ks & 1], b[ks & 1][np]);
        }
      } else {
#pragma unroll
        for (int ks = 0; ks < kHeadDim / 16; ++ks) {
          std::uint32_t a[kMTiles][4];
#pragma unroll
          for (int mi = 0; mi < kMTiles; ++mi) load_a_operand(q_smem, warp_row0 + 16 * mi, 16 * ks, a[mi]);
#pragma unroll
          for (int np = 0; np < kNTiles / 2; ++np) {
            std::uint32_t b[2][2];
            load_b_operand_pair(k_tile, 16 * np, 16 * ks, b);
            mma_n_tile_pair<Element>(scores, np, a, b);
          }
        }
      }

      const std::int64_t score_row0 = row_begin + warp_row0;
      const std::int64_t score_col0 = static_cast<std::int64_t>(n) * kBlockN;
      if constexpr (kLogitExtras) {
        for_each_score(scores, score_row0, score_col0, [&](float& s, std::int64_t row, std::int64_t col) {
          s = row < seq.seq_q && mask.allowed(row, col) ? logits.template operator()<Element>(s, mask, row, col)
                                                        : -INFINITY;
        });
      } else if (keys.needs_mask(n)) {
        apply_band_mask(scores, mask, score_row0, score_col0);
      }
      softmax.update(scores, out, to_log2);
      if constexpr (kLogitExtras) {
        if (dropout.threshold != 0)
          apply_dropout(scores, dropout, static_cast<std::uint32_t>(batch * args.heads_q + head), score_row0, score_col0);
      }

      if constexpr (kStages == 1) {
        // V of tile n has landed and every warp is done with K of tile n.
        ptx::cp_async_wait<0>();
        __syncthreads();
        if (n > keys.begin) {
          load_tile_async<Tile::kThreads>(k_smem(0), key_tile(k_rows, args.k.row_stride, n - 1));
          ptx::cp_async_commit();
        }
      }
#pragma unroll
      for (int kk = 0; kk < kBlockN / 16; ++kk) {
        std::uint32_t a[kMTiles][4];
#pragma unroll
        for (int mi = 0; mi < kMTiles; ++mi) accumulator_as_a<Element>(scores, mi, kk, a[mi]);
#pragma unroll
        for (int dp = 0; dp < kHeadDim / 16; ++dp) {
          std::uint32_t b[2][2];
          load_b_operand_pair_trans(v_tile, 16 * kk, 16 * dp, b);
          mma_n_tile_pair<Element>(out, dp, a, b);
        }
      }
    }
  }

  // Epilogue: normalise, stage this warp's rows in its own part of the Q tile (only this
  // warp ever read those rows), then write them out with 16-byte stores. The warp's
  // lanes must all be past their last ldmatrix of those rows before any lane overwrites them.
  softmax.finalize();
  __syncwarp();
  const float rescale = kLogitExtras ? args.dropout_rescale : 1.0f;
#pragma unroll
  for (int mi = 0; mi < kMTiles; ++mi)
#pragma unroll
    for (int h = 0; h < 2; ++h) {
      const float factor = softmax.output_scale(2 * mi + h, rescale);
      const int row = warp_row0 + 16 * mi + 8 * h + lane_group();
#pragma unroll
      for (int di = 0; di < kDTiles; ++di)
        *reinterpret_cast<std::uint32_t*>(q_smem.at(row, 8 * di + 2 * lane_in_group())) =
            ptx::pack2<Element>(out.value[mi][di][2 * h] * factor, out.value[mi][di][2 * h + 1] * factor);
    }
  __syncwarp();
  Element* const out_rows = row_pointer<Element>(args.out, batch, seq.q_begin + row_begin, head);
  store_tile<32>(q_smem, warp_row0, warp_row0 + Tile::kRowsPerWarp, out_rows, args.out.row_stride, rows_valid, head_dim,
                 lane);

  if (args.lse != nullptr && lane_in_group() == 0) {
#pragma unroll
    for (int mi = 0; mi < kMTiles; ++mi)
#pragma unroll
      for (int h = 0; h < 2; ++h) {
        const int row = warp_row0 + 16 * mi + 8 * h + lane_group();
        if (row < rows_valid)
          args.lse[batch * args.lse_batch_stride + head * args.lse_head_stride +
                   (seq.q_begin + row_begin + row) * args.lse_row_stride] = softmax.log_sum_exp(2 * mi + h, to_log2);
      }
  }
}

// Heavy-first order puts m blocks in grid z (at most 65535, i.e. seq_q up to 4M rows).
constexpr std::int64_t kMaxGridZ = 65535;

template <class Tile, class Element, bool kLogitExtras>
void launch_forward_tile(const AttentionArgs& args, cudaStream_t stream) {
  const std::int64_t m_blocks = (args.seq_q + Tile::kBlockM - 1) / Tile::kBlockM;
  if (m_blocks == 0 || args.batch == 0) return;
  const auto m = static_cast<unsigned>(m_blocks), heads = static_cast<unsigned>(args.heads_q),
             batch = static_cast<unsigned>(args.batch);
  const auto launch = [&](auto kernel, dim3 grid) {
    check_cuda(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, Tile::kSharedBytes),
               "setting the forward kernel's shared-memory size");
    kernel<<<grid, Tile::kThreads, Tile::kSharedBytes, stream>>>(args);
    check_cuda(cudaGetLastError(), "launching the forward kernel");
  };
  if constexpr (!kLogitExtras) {
    if (args.window_right >= 0 && m_blocks <= kMaxGridZ)
      return launch(forward_kernel<Tile, Element, false, true>, dim3(heads, batch, m));
  }
  launch(forward_kernel<Tile, Element, kLogitExtras, false>, dim3(m, heads, batch));
}

// The large tile set where the device lets a block opt into enough shared memory. The
// extras path always takes the base tiles: its per-score work needs the registers that
// larger score tiles would take.
template <int kHeadDimTile, class Element>
void launch_forward(const AttentionArgs& args, cudaStream_t stream) {
  using Base = ForwardTile<kHeadDimTile, false>;
  if (args.has_logit_extras()) return launch_forward_tile<Base, Element, true>(args, stream);
  if constexpr (has_large_variant(kHeadDimTile)) {
    using Large = ForwardTile<kHeadDimTile, true>;
    if (device_shared_memory_per_block() >= Large::kSharedBytes)
      return launch_forward_tile<Large, Element, false>(args, stream);
  }
  launch_forward_tile<Base, Element, false>(args, stream);
}

}  // namespace tileflash::cuda::sm80
