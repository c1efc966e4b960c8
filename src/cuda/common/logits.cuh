// The logit transforms between QK^T and the softmax, in the order every backend applies
// them (docs/design.md): scale, softcap, additive bias, ALiBi. Shared by forward and backward.
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <cmath>
#include <cstdint>

#include "common/attention_math.h"

namespace tileflash::cuda {

// A (rows x cols) slice of the bias tensor for one (batch, head), any strides, stored in
// float32 or in the inputs' 16-bit type.
struct BiasSlice {
  const void* data = nullptr;  // nullptr: no bias
  bool is_float32 = false;
  std::int64_t row_stride = 0, col_stride = 0;

  template <class Element>
  __device__ __forceinline__ float at(std::int64_t row, std::int64_t col) const {
    const std::int64_t index = row * row_stride + col * col_stride;
    if (is_float32) return static_cast<const float*>(data)[index];
    return static_cast<float>(static_cast<const Element*>(data)[index]);
  }
};

struct LogitTransform {
  float scale;
  float softcap;  // 0: none
  BiasSlice bias;
  float alibi_slope;  // 0: none

  // The logit of score `qk` at (row, col) of a sequence with the given mask geometry.
  // The bias is read only where the mask allows, so masked rows past a varlen
  // sequence's end never read outside the bias tensor.
  template <class Element>
  __device__ __forceinline__ float operator()(float qk, const detail::BandMask& mask, std::int64_t row,
                                              std::int64_t col) const {
    float s = qk * scale;
    if (softcap > 0.0f) s = softcap * tanhf(s / softcap);
    if (bias.data != nullptr) s += bias.at<Element>(row, col);
    if (alibi_slope != 0.0f) s += detail::alibi_bias(alibi_slope, mask, row, col);
    return s;
  }
};

}  // namespace tileflash::cuda
