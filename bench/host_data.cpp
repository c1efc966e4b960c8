#include "host_data.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <fstream>
#include <stdexcept>
#include <thread>

#include "common/numeric.h"

namespace tileflash::bench {
namespace {

std::uint64_t splitmix64(std::uint64_t x) {
  x += 0x9E3779B97F4A7C15ull;
  x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
  x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
  return x ^ (x >> 31);
}

// Converting and filling ~10^8 elements per case takes seconds on one core; split the
// index range over the hardware threads so input preparation stays out of the way.
template <class Body>
void parallel_for(std::int64_t count, Body body) {
  const std::int64_t workers = std::clamp<std::int64_t>(std::thread::hardware_concurrency(), 1, 64);
  const std::int64_t chunk = (count + workers - 1) / workers;
  if (count < (1 << 16) || workers == 1) {
    body(std::int64_t{0}, count);
    return;
  }
  std::vector<std::thread> threads;
  for (std::int64_t begin = 0; begin < count; begin += chunk)
    threads.emplace_back(body, begin, std::min(count, begin + chunk));
  for (auto& t : threads) t.join();
}

// Storage offset of logical element (b, s, h, d).
std::int64_t storage_index(const Shape4& sh, Layout layout, std::int64_t b, std::int64_t s, std::int64_t h,
                           std::int64_t d) {
  if (layout == Layout::bshd) return ((b * sh.seq + s) * sh.heads + h) * sh.dim + d;
  return ((b * sh.heads + h) * sh.seq + s) * sh.dim + d;
}

// Visits every logical row (b, s, h) with its logical and storage offsets.
template <class RowBody>
void for_each_row(const Shape4& sh, Layout layout, RowBody body) {
  const std::int64_t rows = sh.batch * sh.seq * sh.heads;
  parallel_for(rows, [&](std::int64_t begin, std::int64_t end) {
    for (std::int64_t row = begin; row < end; ++row) {
      const std::int64_t h = row % sh.heads, s = (row / sh.heads) % sh.seq, b = row / (sh.heads * sh.seq);
      body(row * sh.dim, storage_index(sh, layout, b, s, h, 0));
    }
  });
}

}  // namespace

Shape4 q_shape(const Case& c) { return {c.batch, c.seq_q, c.heads_q, c.head_dim}; }
Shape4 kv_shape(const Case& c) { return {c.batch, c.seq_k, c.heads_kv, c.head_dim}; }

std::vector<float> random_values(std::size_t count, std::uint64_t seed) {
  std::vector<float> values(count);
  const std::uint64_t stream = splitmix64(seed);
  // Four 16-bit uniforms per draw, centred: their sum has variance 4 * 65536^2 / 12.
  const float scale = std::sqrt(3.0f) / 65536.0f;
  parallel_for(static_cast<std::int64_t>(count), [&](std::int64_t begin, std::int64_t end) {
    for (std::int64_t i = begin; i < end; ++i) {
      const std::uint64_t bits = splitmix64(stream ^ static_cast<std::uint64_t>(i));
      const int sum = static_cast<int>(bits & 0xFFFF) + static_cast<int>((bits >> 16) & 0xFFFF) +
                      static_cast<int>((bits >> 32) & 0xFFFF) + static_cast<int>(bits >> 48) - 2 * 65535;
      values[i] = static_cast<float>(sum) * scale;
    }
  });
  return values;
}

HostInputs make_inputs(const Case& c, std::uint64_t seed) {
  HostInputs in;
  in.q = random_values(q_shape(c).numel(), seed * 4 + 0);
  in.k = random_values(kv_shape(c).numel(), seed * 4 + 1);
  in.v = random_values(kv_shape(c).numel(), seed * 4 + 2);
  if (c.direction != Direction::forward) in.dout = random_values(q_shape(c).numel(), seed * 4 + 3);
  return in;
}

std::vector<std::byte> pack(const std::vector<float>& logical, const Shape4& shape, DType dtype, Layout layout) {
  if (static_cast<std::int64_t>(logical.size()) != shape.numel()) throw std::logic_error("pack: size mismatch");
  std::vector<std::byte> storage(logical.size() * dtype_size(dtype));
  for_each_row(shape, layout, [&](std::int64_t from, std::int64_t to) {
    for (std::int64_t d = 0; d < shape.dim; ++d) {
      const float x = logical[from + d];
      std::byte* dst = storage.data() + (to + d) * dtype_size(dtype);
      switch (dtype) {
        case DType::float32: std::memcpy(dst, &x, 4); break;
        case DType::float64: {
          const double y = x;
          std::memcpy(dst, &y, 8);
          break;
        }
        case DType::bfloat16: {
          const std::uint16_t y = detail::float_to_bf16(x);
          std::memcpy(dst, &y, 2);
          break;
        }
        case DType::float16: {
          const std::uint16_t y = detail::float_to_fp16(x);
          std::memcpy(dst, &y, 2);
          break;
        }
        case DType::float8_e4m3: *dst = static_cast<std::byte>(detail::float_to_fp8_e4m3(x)); break;
        case DType::int32: throw std::logic_error("pack: int32 is not a value dtype");
      }
    }
  });
  return storage;
}

std::vector<float> unpack(const void* storage, const Shape4& shape, DType dtype, Layout layout) {
  std::vector<float> logical(shape.numel());
  const auto* bytes = static_cast<const std::byte*>(storage);
  for_each_row(shape, layout, [&](std::int64_t to, std::int64_t from) {
    for (std::int64_t d = 0; d < shape.dim; ++d) {
      const std::byte* src = bytes + (from + d) * dtype_size(dtype);
      float& x = logical[to + d];
      switch (dtype) {
        case DType::float32: std::memcpy(&x, src, 4); break;
        case DType::float64: {
          double y;
          std::memcpy(&y, src, 8);
          x = static_cast<float>(y);
          break;
        }
        case DType::bfloat16:
        case DType::float16: {
          std::uint16_t y;
          std::memcpy(&y, src, 2);
          x = dtype == DType::bfloat16 ? detail::bf16_to_float(y) : detail::fp16_to_float(y);
          break;
        }
        case DType::float8_e4m3: x = detail::fp8_e4m3_to_float(std::to_integer<std::uint8_t>(*src)); break;
        case DType::int32: throw std::logic_error("unpack: int32 is not a value dtype");
      }
    }
  });
  return logical;
}

TensorView make_view(void* data, const Shape4& shape, DType dtype, Layout layout, DeviceType device,
                     int device_index) {
  if (layout == Layout::bshd)
    return TensorView::contiguous(data, dtype, {shape.batch, shape.seq, shape.heads, shape.dim}, device, device_index);
  return TensorView::contiguous(data, dtype, {shape.batch, shape.heads, shape.seq, shape.dim}, device, device_index)
      .transposed(1, 2);
}

std::string cpu_model_name() {
  std::ifstream cpuinfo("/proc/cpuinfo");
  std::string line;
  while (std::getline(cpuinfo, line)) {
    if (line.rfind("model name", 0) == 0) {
      const auto colon = line.find(':');
      if (colon != std::string::npos) {
        std::string name = line.substr(colon + 1);
        name.erase(0, name.find_first_not_of(' '));
        return name;
      }
    }
  }
  return "unknown cpu";
}

}  // namespace tileflash::bench
