#include "common/host_tensor.h"

#include <cmath>
#include <cstring>
#include <limits>
#include <random>
#include <stdexcept>
#include <utility>

#include "cpu/layout.h"

namespace tileflash::testing {

HostTensor::HostTensor(DType dtype, std::vector<std::int64_t> shape) : dtype_(dtype), shape_(std::move(shape)) {
  if (shape_.empty() || shape_.size() > static_cast<std::size_t>(TensorView::kMaxRank))
    throw std::invalid_argument("HostTensor: rank must be between 1 and 4");
  numel_ = 1;
  for (std::int64_t s : shape_) numel_ *= s;
  storage_.resize(static_cast<std::size_t>(numel_) * dtype_size(dtype_));
}

TensorView HostTensor::view() {
  if (shape_.empty()) return TensorView{};
  TensorView t;
  t.data = storage_.data();
  t.dtype = dtype_;
  t.rank = static_cast<int>(shape_.size());
  std::int64_t stride = 1;
  for (int d = t.rank - 1; d >= 0; --d) {
    t.shape[d] = shape_[d];
    t.stride[d] = stride;
    stride *= shape_[d];
  }
  return t;
}

double HostTensor::get(std::int64_t index) const { return cpu::load_element(storage_.data(), dtype_, index); }
void HostTensor::set(std::int64_t index, double value) { cpu::store_element(storage_.data(), dtype_, index, value); }

void HostTensor::fill_normal(std::uint64_t seed, double stddev, double mean) {
  std::mt19937_64 gen(seed);
  std::normal_distribution<double> dist(mean, stddev);
  for (std::int64_t i = 0; i < numel_; ++i) set(i, dist(gen));
}

void HostTensor::fill(double value) {
  for (std::int64_t i = 0; i < numel_; ++i) set(i, value);
}

void HostTensor::poison() {
  if (dtype_ == DType::int32) {
    for (std::int64_t i = 0; i < numel_; ++i) set(i, std::numeric_limits<std::int32_t>::min());
  } else {
    fill(std::numeric_limits<double>::quiet_NaN());
  }
}

bool HostTensor::all_finite() const {
  for (std::int64_t i = 0; i < numel_; ++i)
    if (!std::isfinite(get(i))) return false;
  return true;
}

HostTensor HostTensor::converted(DType dtype) const {
  HostTensor out(dtype, shape_);
  for (std::int64_t i = 0; i < numel_; ++i) out.set(i, get(i));
  return out;
}

}  // namespace tileflash::testing
