// Where the rows of one (sequence, head) live in the caller's tensors, and element
// loads/stores in any of the storage dtypes. Shared by the reference and the tiled kernels.
#pragma once

#include <cstdint>
#include <cstring>

#include "api/problem.h"
#include "common/numeric.h"
#include "tileflash/params.h"

namespace tileflash::cpu {

inline double load_element(const void* base, DType dtype, std::int64_t index) {
  switch (dtype) {
    case DType::float32:
      return static_cast<const float*>(base)[index];
    case DType::float64:
      return static_cast<const double*>(base)[index];
    case DType::float16:
      return detail::fp16_to_float(static_cast<const std::uint16_t*>(base)[index]);
    case DType::bfloat16:
      return detail::bf16_to_float(static_cast<const std::uint16_t*>(base)[index]);
    case DType::int32:
      return static_cast<const std::int32_t*>(base)[index];
    case DType::float8_e4m3:
      return detail::fp8_e4m3_to_float(static_cast<const std::uint8_t*>(base)[index]);
  }
  return 0.0;
}

inline void store_element(void* base, DType dtype, std::int64_t index, double value) {
  switch (dtype) {
    case DType::float32:
      static_cast<float*>(base)[index] = static_cast<float>(value);
      break;
    case DType::float64:
      static_cast<double*>(base)[index] = value;
      break;
    case DType::float16:
      static_cast<std::uint16_t*>(base)[index] = detail::float_to_fp16(static_cast<float>(value));
      break;
    case DType::bfloat16:
      static_cast<std::uint16_t*>(base)[index] = detail::float_to_bf16(static_cast<float>(value));
      break;
    case DType::int32:
      static_cast<std::int32_t*>(base)[index] = static_cast<std::int32_t>(value);
      break;
    case DType::float8_e4m3:
      static_cast<std::uint8_t*>(base)[index] = detail::float_to_fp8_e4m3(static_cast<float>(value));
      break;
  }
}

// Rounds a value to what the storage dtype can hold (identity for float64).
inline double round_to_dtype(double value, DType dtype) {
  switch (dtype) {
    case DType::float32:
      return static_cast<float>(value);
    case DType::float16:
      return detail::fp16_to_float(detail::float_to_fp16(static_cast<float>(value)));
    case DType::bfloat16:
      return detail::bf16_to_float(detail::float_to_bf16(static_cast<float>(value)));
    case DType::float8_e4m3:
      return detail::fp8_e4m3_to_float(detail::float_to_fp8_e4m3(static_cast<float>(value)));
    case DType::float64:
    case DType::int32:
      break;
  }
  return value;
}

// Converts `count` consecutive elements to float, the dtype switch outside the loop.
inline void load_floats(const void* src, DType dtype, std::int64_t count, float* dst) {
  switch (dtype) {
    case DType::float32: {
      const auto* f = static_cast<const float*>(src);
      for (std::int64_t i = 0; i < count; ++i) dst[i] = f[i];
      break;
    }
    case DType::bfloat16: {
      const auto* h = static_cast<const std::uint16_t*>(src);
      for (std::int64_t i = 0; i < count; ++i) dst[i] = detail::bf16_to_float(h[i]);
      break;
    }
    case DType::float16: {
      const auto* h = static_cast<const std::uint16_t*>(src);
      for (std::int64_t i = 0; i < count; ++i) dst[i] = detail::fp16_to_float(h[i]);
      break;
    }
    default:
      for (std::int64_t i = 0; i < count; ++i) dst[i] = static_cast<float>(load_element(src, dtype, i));
  }
}

inline void store_floats(const float* src, std::int64_t count, void* dst, DType dtype) {
  switch (dtype) {
    case DType::float32: {
      auto* f = static_cast<float*>(dst);
      for (std::int64_t i = 0; i < count; ++i) f[i] = src[i];
      break;
    }
    case DType::bfloat16: {
      auto* h = static_cast<std::uint16_t*>(dst);
      for (std::int64_t i = 0; i < count; ++i) h[i] = detail::float_to_bf16(src[i]);
      break;
    }
    case DType::float16: {
      auto* h = static_cast<std::uint16_t*>(dst);
      for (std::int64_t i = 0; i < count; ++i) h[i] = detail::float_to_fp16(src[i]);
      break;
    }
    default:
      for (std::int64_t i = 0; i < count; ++i) store_element(dst, dtype, i, src[i]);
  }
}

// The rows (seq, head_dim) of one head of one sequence inside a q/k/v/out-shaped tensor:
// element (row, col) sits at data + (row * row_stride + col) elements.
struct HeadRows {
  void* data = nullptr;
  DType dtype = DType::float32;
  std::int64_t row_stride = 0;

  double load(std::int64_t row, std::int64_t col) const { return load_element(data, dtype, row * row_stride + col); }
  void store(std::int64_t row, std::int64_t col, double value) const {
    store_element(data, dtype, row * row_stride + col, value);
  }
  void* row_address(std::int64_t row) const {
    return static_cast<char*>(data) + row * row_stride * static_cast<std::int64_t>(dtype_size(dtype));
  }
  // Row `row`, columns [0, count), as floats.
  void load_row(std::int64_t row, std::int64_t count, float* dst) const {
    load_floats(row_address(row), dtype, count, dst);
  }
  void store_row(std::int64_t row, std::int64_t count, const float* src) const {
    store_floats(src, count, row_address(row), dtype);
  }
};

// One sequence of the batch: its packed start rows and lengths (varlen or not).
struct Sequence {
  std::int64_t batch = 0;
  std::int64_t q_start = 0, k_start = 0;  // rows in the packed tensors (0 when not varlen)
  std::int64_t seq_q = 0, seq_k = 0;
};

inline Sequence sequence(const ForwardParams& params, const detail::Problem& problem, std::int64_t b) {
  Sequence s;
  s.batch = b;
  if (problem.varlen) {
    const auto* cu_q = static_cast<const std::int32_t*>(params.cu_seqlens_q.data);
    const auto* cu_k = static_cast<const std::int32_t*>(params.cu_seqlens_k.data);
    s.q_start = cu_q[b];
    s.k_start = cu_k[b];
    s.seq_q = cu_q[b + 1] - cu_q[b];
    s.seq_k = cu_k[b + 1] - cu_k[b];
  } else {
    s.seq_q = problem.seq_q;
    s.seq_k = problem.seq_k;
  }
  return s;
}

// Rows of head `head` of sequence `seq` in a tensor shaped like q (is_query) or like k.
inline HeadRows head_rows(const TensorView& t, const detail::Problem& problem, const Sequence& seq, std::int64_t head,
                          bool is_query) {
  HeadRows r;
  r.dtype = t.dtype;
  const std::int64_t start = is_query ? seq.q_start : seq.k_start;
  std::int64_t offset;
  if (problem.varlen) {
    offset = start * t.stride[0] + head * t.stride[1];
    r.row_stride = t.stride[0];
  } else {
    offset = seq.batch * t.stride[0] + head * t.stride[2];
    r.row_stride = t.stride[1];
  }
  r.data = static_cast<char*>(t.data) + offset * static_cast<std::int64_t>(dtype_size(t.dtype));
  return r;
}

// The log-sum-exp entries of one (sequence, query head): element row at data[row * stride].
struct LseRow {
  float* data = nullptr;
  std::int64_t stride = 0;
  float& operator[](std::int64_t row) const { return data[row * stride]; }
};

inline LseRow lse_row(const TensorView& lse, const detail::Problem& problem, const Sequence& seq, std::int64_t head) {
  LseRow r;
  auto* base = static_cast<float*>(lse.data);
  if (problem.varlen) {
    r.data = base + head * lse.stride[0] + seq.q_start * lse.stride[1];
    r.stride = lse.stride[1];
  } else {
    r.data = base + seq.batch * lse.stride[0] + head * lse.stride[1];
    r.stride = lse.stride[2];
  }
  return r;
}

// The additive bias of one (sequence, query head), broadcast over batch and heads.
struct BiasTile {
  const void* data = nullptr;
  DType dtype = DType::float32;
  std::int64_t row_stride = 0, col_stride = 0;

  bool defined() const { return data != nullptr; }
  double load(std::int64_t row, std::int64_t col) const {
    return load_element(data, dtype, row * row_stride + col * col_stride);
  }
};

inline BiasTile bias_tile(const TensorView& bias, const Sequence& seq, std::int64_t head) {
  BiasTile t;
  if (!bias.defined()) return t;
  const std::int64_t b = bias.shape[0] == 1 ? 0 : seq.batch;
  const std::int64_t h = bias.shape[1] == 1 ? 0 : head;
  t.dtype = bias.dtype;
  t.data = static_cast<const char*>(bias.data) +
           (b * bias.stride[0] + h * bias.stride[1]) * static_cast<std::int64_t>(dtype_size(bias.dtype));
  t.row_stride = bias.stride[2];
  t.col_stride = bias.stride[3];
  return t;
}

inline float alibi_slope(const TensorView& slopes, const Sequence& seq, std::int64_t head) {
  if (!slopes.defined()) return 0.0f;
  const auto* data = static_cast<const float*>(slopes.data);
  if (slopes.rank == 1) return data[head * slopes.stride[0]];
  return data[seq.batch * slopes.stride[0] + head * slopes.stride[1]];
}

}  // namespace tileflash::cpu
