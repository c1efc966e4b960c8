// The portable kernel set: one float per "vector"; runs on every CPU.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>

#include "common/philox.h"
#include "cpu/tiled_kernels.h"

namespace tileflash::cpu::tiled {
namespace scalar {

#define TILEFLASH_TARGET

struct Vec {
  static constexpr int width = 1;
  float v;

  TILEFLASH_TARGET static Vec load(const float* p) { return {*p}; }
  TILEFLASH_TARGET void store(float* p) const { *p = v; }
  TILEFLASH_TARGET static Vec broadcast(float x) { return {x}; }
  TILEFLASH_TARGET static Vec zero() { return {0.0f}; }
  TILEFLASH_TARGET friend Vec operator+(Vec a, Vec b) { return {a.v + b.v}; }
  TILEFLASH_TARGET friend Vec operator-(Vec a, Vec b) { return {a.v - b.v}; }
  TILEFLASH_TARGET friend Vec operator*(Vec a, Vec b) { return {a.v * b.v}; }
  TILEFLASH_TARGET friend Vec fma(Vec a, Vec b, Vec c) { return {a.v * b.v + c.v}; }
  TILEFLASH_TARGET friend Vec max(Vec a, Vec b) { return {a.v > b.v ? a.v : b.v}; }
  TILEFLASH_TARGET float reduce_max() const { return v; }
  TILEFLASH_TARGET float reduce_add() const { return v; }
  TILEFLASH_TARGET Vec exp() const { return {std::exp(v)}; }
};

constexpr int kRowBlock = 4;
constexpr int kColVectors = 4;

#include "cpu/tiled_kernels.inl"
#undef TILEFLASH_TARGET

}  // namespace scalar

const KernelSet& scalar_kernels() {
  static const KernelSet set{"scalar", scalar::Vec::width, scalar::forward_tile, scalar::backward_tile};
  return set;
}

}  // namespace tileflash::cpu::tiled
