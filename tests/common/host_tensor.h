// Test utilities: an owning host tensor for any tileflash dtype.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

#include "tileflash/tensor.h"

namespace tileflash::testing {

// Owns a contiguous row-major buffer. Elements are read and written as double and
// rounded to the dtype on write (round to nearest even).
class HostTensor {
 public:
  HostTensor() = default;
  HostTensor(DType dtype, std::vector<std::int64_t> shape);

  DType dtype() const { return dtype_; }
  const std::vector<std::int64_t>& shape() const { return shape_; }
  std::int64_t numel() const { return numel_; }
  std::size_t bytes() const { return storage_.size(); }
  void* data() { return storage_.data(); }
  const void* data() const { return storage_.data(); }

  // A row-major view of the whole buffer (a rank-0 "not given" view when empty-shaped).
  TensorView view();

  double get(std::int64_t index) const;
  void set(std::int64_t index, double value);

  // Fresh N(mean, stddev^2) values from `seed`.
  void fill_normal(std::uint64_t seed, double stddev = 1.0, double mean = 0.0);
  void fill(double value);
  // NaN in every element (int32: INT32_MIN), to catch elements an operation never writes.
  void poison();
  // Every element finite (not NaN, not +-inf).
  bool all_finite() const;
  // The same values in another dtype (rounded when narrower).
  HostTensor converted(DType dtype) const;

 private:
  DType dtype_ = DType::float32;
  std::vector<std::int64_t> shape_;
  std::int64_t numel_ = 0;
  std::vector<std::byte> storage_;
};

}  // namespace tileflash::testing
