#include "bench.h"

#include <algorithm>

#include "tileflash/attention.h"

namespace tileflash::bench {

const char* direction_name(Direction direction) {
  switch (direction) {
    case Direction::forward: return "fwd";
    case Direction::backward: return "bwd";
    case Direction::forward_backward: return "fwd+bwd";
  }
  return "?";
}

std::string run_library_operation(const tileflash::BackwardParams& params, Direction direction) {
  switch (direction) {
    case Direction::forward: return tileflash::forward(params).kernel;
    case Direction::backward: return tileflash::backward(params).kernel;
    case Direction::forward_backward:
      tileflash::forward(params);
      return tileflash::backward(params).kernel;
  }
  return {};
}

std::function<void()> timed_operation(Direction direction, std::function<void()> forward,
                                      std::function<void()> backward) {
  switch (direction) {
    case Direction::forward: return forward;
    case Direction::backward:
      forward();
      return backward;
    case Direction::forward_backward:
      return [forward, backward] {
        forward();
        backward();
      };
  }
  return forward;
}

const char* layout_name(Layout layout) { return layout == Layout::bshd ? "bshd" : "bhsd"; }

const char* short_dtype_name(DType dtype) {
  switch (dtype) {
    case DType::float32: return "fp32";
    case DType::float16: return "fp16";
    case DType::bfloat16: return "bf16";
    case DType::float64: return "fp64";
    case DType::int32: return "int32";
    case DType::float8_e4m3: return "fp8";
  }
  return "?";
}

DType output_dtype(const Case& c) { return c.dtype == DType::float8_e4m3 ? DType::bfloat16 : c.dtype; }

std::string fp8_direction_reason(const Case& c) {
  if (c.dtype == DType::float8_e4m3 && c.direction != Direction::forward)
    return "FP8 is forward-only (tileflash has no backward with float8_e4m3 inputs)";
  return {};
}

double attended_pairs(const Case& c) {
  const double all = static_cast<double>(c.seq_q) * static_cast<double>(c.seq_k);
  if (!c.causal) return all;
  if (c.seq_q == c.seq_k) return all / 2;
  // Row i attends columns 0 .. i + seq_k - seq_q (bottom-right alignment).
  double pairs = 0;
  for (std::int64_t i = 0; i < c.seq_q; ++i)
    pairs += static_cast<double>(std::clamp<std::int64_t>(i + c.seq_k - c.seq_q + 1, 0, c.seq_k));
  return pairs;
}

double case_flops(const Case& c) {
  const double forward = 4.0 * static_cast<double>(c.batch) * static_cast<double>(c.heads_q) * attended_pairs(c) *
                         static_cast<double>(c.head_dim);
  switch (c.direction) {
    case Direction::forward: return forward;
    case Direction::backward: return 2.5 * forward;
    case Direction::forward_backward: return 3.5 * forward;
  }
  return forward;
}

double median(std::vector<double> values) {
  if (values.empty()) return 0.0;
  std::sort(values.begin(), values.end());
  const std::size_t n = values.size();
  return n % 2 ? values[n / 2] : 0.5 * (values[n / 2 - 1] + values[n / 2]);
}

}  // namespace tileflash::bench
