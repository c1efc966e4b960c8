// Online softmax over key tiles (FlashAttention-2 ordering: rescale the running output,
// normalise once at the end), in base 2 so every exponential is one exp2.
#pragma once

#include <cmath>

#include "cuda/common/fragment.cuh"
#include "cuda/common/ptx.cuh"

namespace tileflash::cuda {

constexpr float kLog2e = 1.4426950408889634f;
constexpr float kLn2 = 0.6931471805599453f;

// How far (base 2) the reference maximum may lag behind a row's scores: P <= 2^8.
constexpr int kLazyRescaleLag = 8;

// Per-row state of the rows this lane holds in a warp's accumulator tile: row 2 * mi + h
// is tile row 16 * mi + 8 * h + lane_group(). `max` is in the caller's logit units, `sum`
// is this lane's partial sum (its 2 columns per n-tile) until finalize() reduces the quad.
// kMaxLag: see update(); 0 keeps `max` the running maximum. kPairwise: a tile's row
// maximum and row sum are reduced as pairwise trees (log2 n dependent steps) instead of
// running chains; it pays at d <= 64 (H200 A/Bs: sm90 forward 0 to +1.3 %, sm80 forward
// 0 to +2 %) and cost the sm80 forward up to 4 % at d = 128 (perf-notes-hopper.md v15).
template <int kMTiles, int kMaxLag, bool kPairwise = false>
struct OnlineSoftmax {
  static constexpr int kRows = 2 * kMTiles;
  float max[kRows];
  float sum[kRows];

  __device__ __forceinline__ void init() {
#pragma unroll
    for (int r = 0; r < kRows; ++r) {
      max[r] = -INFINITY;
      sum[r] = 0.0f;
    }
  }

  // Fold one tile of logits s (any units; `to_log2` converts them to base-2 exponents,
  // and must be > 0) into the state: s becomes P = exp2(s * to_log2 - max * to_log2),
  // and `out` is rescaled when the maximum moves. Rows with no allowed score so far keep a
  // -inf maximum and contribute zeros. `max` is a reference, not always the running
  // maximum: it moves only when a tile's scores exceed it by more than kMaxLag (base 2),
  // so most tiles of a row skip the output rescale (one multiply per output element).
  // That is exact: the sum and the output use the same reference, and P <= 2^kMaxLag
  // keeps its relative precision in bf16/fp16 and cannot overflow the fp32 sums.
  template <int kNTiles, int kOutTiles>
  __device__ __forceinline__ void update(AccumulatorTile<kMTiles, kNTiles>& s, AccumulatorTile<kMTiles, kOutTiles>& out,
                                         float to_log2) {
    float correction[kRows], shift[kRows];
    if (advance_max(s, to_log2, correction, shift)) rescale(out, correction);
    exponentiate_shifted(s, to_log2, correction, shift);
  }

  // update() without touching the output, for kernels whose output accumulator is still
  // being written by the tensor cores while the next scores are exponentiated: returns
  // whether any row of the warp needs its output rescaled by `correction`, which the
  // caller does with rescale() once the output may be touched.
  template <int kNTiles>
  __device__ __forceinline__ bool exponentiate(AccumulatorTile<kMTiles, kNTiles>& s, float to_log2,
                                               float (&correction)[kRows]) {
    float shift[kRows];
    const bool moved = advance_max(s, to_log2, correction, shift);
    exponentiate_shifted(s, to_log2, correction, shift);
    return moved;
  }

  // This lane's 2 * kNTiles values of row 2 * mi + h of s, by index, for tree_reduce.
  template <int kNTiles>
  __device__ __forceinline__ static auto row_values(const AccumulatorTile<kMTiles, kNTiles>& s, int mi, int h) {
    return [&s, mi, h](int i) { return s.value[mi][i / 2][2 * h + i % 2]; };
  }

  // The new reference maxima; `shift` is each row's in base-2 units, `correction` the
  // factor that moves the old output and sum to it. True when any row of the warp moved.
  template <int kNTiles>
  __device__ __forceinline__ bool advance_max(const AccumulatorTile<kMTiles, kNTiles>& s, float to_log2,
                                              float (&correction)[kRows], float (&shift)[kRows]) {
    bool moved = false;
#pragma unroll
    for (int mi = 0; mi < kMTiles; ++mi) {
#pragma unroll
      for (int h = 0; h < 2; ++h) {
        const int r = 2 * mi + h;
        float tile_max = max[r];
        if constexpr (kPairwise) {
          tile_max = fmaxf(tile_max, tree_reduce<0, 2 * kNTiles>([](float a, float b) { return fmaxf(a, b); },
                                                                 row_values(s, mi, h)));
        } else {
#pragma unroll
          for (int ni = 0; ni < kNTiles; ++ni)
            tile_max = fmaxf(tile_max, fmaxf(s.value[mi][ni][2 * h], s.value[mi][ni][2 * h + 1]));
        }
        tile_max = quad_max(tile_max);
        // From a -inf reference any allowed score moves it (+inf > kMaxLag); with every
        // score masked so far the difference is NaN and it stays.
        const bool move = (tile_max - max[r]) * to_log2 > static_cast<float>(kMaxLag);
        const float reference = move ? tile_max : max[r];
        // A -inf reference shifts by 0 instead, so exp2(-inf - 0) = 0 rather than
        // exp2(-inf + inf) = NaN.
        shift[r] = reference == -INFINITY ? 0.0f : reference * to_log2;
        correction[r] = ptx::exp2_approx(max[r] * to_log2 - shift[r]);
        moved |= move;
        max[r] = reference;
      }
    }
    return __any_sync(0xFFFFFFFFu, moved);
  }

  template <int kNTiles>
  __device__ __forceinline__ void exponentiate_shifted(AccumulatorTile<kMTiles, kNTiles>& s, float to_log2,
                                                       const float (&correction)[kRows], const float (&shift)[kRows]) {
#pragma unroll
    for (int mi = 0; mi < kMTiles; ++mi) {
#pragma unroll
      for (int h = 0; h < 2; ++h) {
        const int r = 2 * mi + h;
        float tile_sum = 0.0f;
#pragma unroll
        for (int ni = 0; ni < kNTiles; ++ni) {
#pragma unroll
          for (int c = 0; c < 2; ++c) {
            float& x = s.value[mi][ni][2 * h + c];
            x = ptx::exp2_approx(fmaf(x, to_log2, -shift[r]));
            if constexpr (!kPairwise) tile_sum += x;
          }
        }
        if constexpr (kPairwise)
          tile_sum = tree_reduce<0, 2 * kNTiles>([](float a, float b) { return a + b; }, row_values(s, mi, h));
        sum[r] = fmaf(sum[r], correction[r], tile_sum);
      }
    }
  }

  template <int kOutTiles>
  __device__ __forceinline__ void rescale(AccumulatorTile<kMTiles, kOutTiles>& out,
                                          const float (&correction)[kRows]) const {
#pragma unroll
    for (int mi = 0; mi < kMTiles; ++mi)
#pragma unroll
      for (int oi = 0; oi < kOutTiles; ++oi)
#pragma unroll
        for (int e = 0; e < 4; ++e) out.value[mi][oi][e] *= correction[2 * mi + e / 2];
  }

  // Sum the quad's partial sums; afterwards every lane of a row holds the row's total.
  __device__ __forceinline__ void finalize() {
#pragma unroll
    for (int r = 0; r < kRows; ++r) sum[r] = quad_sum(sum[r]);
  }

  // Merge another state of the same rows (e.g. from a split over keys), both finalized.
  __device__ __forceinline__ void merge(const OnlineSoftmax& other, float to_log2, float (&self_weight)[kRows],
                                        float (&other_weight)[kRows]) {
#pragma unroll
    for (int r = 0; r < kRows; ++r) {
      const float m = fmaxf(max[r], other.max[r]);
      const float shift = m == -INFINITY ? 0.0f : m * to_log2;
      self_weight[r] = exp2f(max[r] * to_log2 - shift);
      other_weight[r] = exp2f(other.max[r] * to_log2 - shift);
      sum[r] = sum[r] * self_weight[r] + other.sum[r] * other_weight[r];
      max[r] = m;
    }
  }

  // Natural-log log-sum-exp of a finalized row; -inf for a row with no allowed score.
  __device__ __forceinline__ float log_sum_exp(int r, float to_log2) const {
    if (sum[r] == 0.0f) return -INFINITY;
    return (max[r] * to_log2 + log2f(sum[r])) * kLn2;
  }

  // Factor that turns the accumulated, unnormalised output into the softmax average
  // (times `extra`, e.g. the dropout rescale); 0 for empty rows, whose output is 0.
  __device__ __forceinline__ float output_scale(int r, float extra) const {
    return sum[r] == 0.0f ? 0.0f : extra / sum[r];
  }
};

}  // namespace tileflash::cuda
