// GPU test utilities: device buffers, and running an operation built on host views on
// the GPU (inputs uploaded, outputs poisoned on the device and copied back).
// Only meaningful in builds with CUDA (TILEFLASH_TESTS_WITH_CUDA); tests skip without a GPU.
#pragma once

#if TILEFLASH_TESTS_WITH_CUDA

#include <cuda_runtime.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <utility>
#include <vector>

#include "common/attention_case.h"
#include "tileflash/attention.h"
#include "tileflash/error.h"
#include "tileflash/params.h"

// Skips the current test where no CUDA device is visible (the tests still build and run).
#define SKIP_WITHOUT_GPU()                                                               \
  do {                                                                                   \
    if (::tileflash::cuda_device_count() == 0) GTEST_SKIP() << "no CUDA device visible"; \
  } while (0)

namespace tileflash::testing::gpu {

inline void check(cudaError_t status, const char* what) {
  if (status != cudaSuccess) throw RuntimeError(std::string(what) + ": " + cudaGetErrorString(status));
}

class DeviceBuffer {
 public:
  DeviceBuffer() = default;
  explicit DeviceBuffer(std::size_t bytes) : bytes_(bytes) {
    if (bytes > 0) check(cudaMalloc(&data_, bytes), "cudaMalloc");
  }
  ~DeviceBuffer() {
    if (data_ != nullptr) cudaFree(data_);
  }
  DeviceBuffer(DeviceBuffer&& other) noexcept
      : data_(std::exchange(other.data_, nullptr)), bytes_(std::exchange(other.bytes_, 0)) {}
  DeviceBuffer& operator=(DeviceBuffer&& other) noexcept {
    std::swap(data_, other.data_);
    std::swap(bytes_, other.bytes_);
    return *this;
  }
  DeviceBuffer(const DeviceBuffer&) = delete;
  DeviceBuffer& operator=(const DeviceBuffer&) = delete;

  void* data() const { return data_; }
  std::size_t bytes() const { return bytes_; }

 private:
  void* data_ = nullptr;
  std::size_t bytes_ = 0;
};

// Bytes from a view's data pointer to one past its last element (strides >= 0).
inline std::size_t extent_bytes(const TensorView& t) {
  if (t.numel() == 0) return 0;
  std::int64_t last = 0;
  for (int d = 0; d < t.rank; ++d) last += (t.shape[d] - 1) * t.stride[d];
  return static_cast<std::size_t>(last + 1) * dtype_size(t.dtype);
}

// The device copy of a host view: same shape and strides, the covered bytes uploaded.
inline TensorView upload(const TensorView& host, std::vector<DeviceBuffer>& keep) {
  if (!host.defined()) return host;
  DeviceBuffer& buffer = keep.emplace_back(extent_bytes(host));
  if (buffer.bytes() > 0) check(cudaMemcpy(buffer.data(), host.data, buffer.bytes(), cudaMemcpyHostToDevice), "upload");
  TensorView device = host;
  device.data = buffer.data();
  device.device = DeviceType::cuda;
  device.device_index = 0;
  return device;
}

// A device buffer for an output view, filled with 0xFF bytes: NaN in fp16, bf16 and fp32.
inline TensorView poisoned_output(const TensorView& host, std::vector<DeviceBuffer>& keep) {
  if (!host.defined()) return host;
  DeviceBuffer& buffer = keep.emplace_back(extent_bytes(host));
  if (buffer.bytes() > 0) check(cudaMemset(buffer.data(), 0xFF, buffer.bytes()), "poison");
  TensorView device = host;
  device.data = buffer.data();
  device.device = DeviceType::cuda;
  device.device_index = 0;
  return device;
}

inline void download(const TensorView& device, const TensorView& host) {
  const std::size_t bytes = extent_bytes(host);
  if (bytes > 0) check(cudaMemcpy(host.data, device.data, bytes, cudaMemcpyDeviceToHost), "download");
}

// The longest sequence of host-resident, contiguous varlen offsets.
inline std::int64_t longest_sequence(const TensorView& cu_seqlens) {
  const auto* offsets = static_cast<const std::int32_t*>(cu_seqlens.data);
  std::int64_t longest = 0;
  for (std::int64_t b = 0; b + 1 < cu_seqlens.shape[0]; ++b)
    longest = std::max<std::int64_t>(longest, offsets[b + 1] - offsets[b]);
  return longest;
}

// The params with every input uploaded and every output a poisoned device buffer
// (backend cuda); `keep` owns the buffers. Device-resident offsets need max_seqlen,
// which is taken from the host offsets when not given.
inline ForwardParams to_device(const ForwardParams& host, std::vector<DeviceBuffer>& keep) {
  keep.reserve(keep.size() + 13);
  ForwardParams p = host;
  if (host.cu_seqlens_q.defined()) {
    if (p.max_seqlen_q == 0) p.max_seqlen_q = longest_sequence(host.cu_seqlens_q);
    if (p.max_seqlen_k == 0) p.max_seqlen_k = longest_sequence(host.cu_seqlens_k);
  }
  p.q = upload(host.q, keep);
  p.k = upload(host.k, keep);
  p.v = upload(host.v, keep);
  p.bias = upload(host.bias, keep);
  p.alibi_slopes = upload(host.alibi_slopes, keep);
  p.cu_seqlens_q = upload(host.cu_seqlens_q, keep);
  p.cu_seqlens_k = upload(host.cu_seqlens_k, keep);
  p.q_descale = upload(host.q_descale, keep);
  p.k_descale = upload(host.k_descale, keep);
  p.v_descale = upload(host.v_descale, keep);
  p.out = poisoned_output(host.out, keep);
  p.lse = poisoned_output(host.lse, keep);
  p.backend = Backend::cuda;
  return p;
}

// Runs the forward described by host views on the GPU and writes out and lse back into
// the host views. Returns the kernel the selector chose.
inline KernelChoice forward_on_gpu(const ForwardParams& host) {
  std::vector<DeviceBuffer> keep;
  const ForwardParams p = to_device(host, keep);
  const KernelChoice choice = forward(p);
  check(cudaGetLastError(), "forward launch");
  check(cudaDeviceSynchronize(), "forward");
  download(p.out, host.out);
  if (host.lse.defined()) download(p.lse, host.lse);
  return choice;
}

// Whether this build compiled a forward kernel for the case (TILEFLASH_HEAD_DIMS may be
// reduced): a missing head-dim tile is false, any other refusal a test failure.
inline bool forward_supported_on_gpu(AttentionCase& c) {
  AttentionOutputs o = c.new_outputs();
  ForwardParams p = c.forward_params(o, Backend::cuda);
  for (TensorView* t : {&p.q, &p.k, &p.v, &p.out, &p.lse, &p.bias, &p.alibi_slopes, &p.cu_seqlens_q, &p.cu_seqlens_k,
                        &p.q_descale, &p.k_descale, &p.v_descale})
    if (t->defined()) t->device = DeviceType::cuda;
  if (p.cu_seqlens_q.defined()) {
    p.max_seqlen_q = longest_sequence(c.cu_seqlens_q.view());
    p.max_seqlen_k = longest_sequence(c.cu_seqlens_k.view());
  }
  std::string reason;
  if (is_supported(p, &reason)) return true;
  if (reason.find("head-dim tile") == std::string::npos) ADD_FAILURE() << reason << " for " << c.config().describe();
  return false;
}

// Sets TILEFLASH_SMEM_LIMIT_BYTES for its lifetime (the CUDA launchers read it at every
// launch), so the tiles of GPUs with less shared memory run here; restores the old value.
// Sets an environment variable the library reads at every call for one scope, then
// restores it.
class ScopedEnvironment {
 public:
  ScopedEnvironment(const char* variable, const std::string& value) : variable_(variable) {
    if (const char* old = std::getenv(variable)) previous_ = old;
    setenv(variable, value.c_str(), 1);
  }
  ~ScopedEnvironment() {
    if (previous_.empty()) unsetenv(variable_);
    else setenv(variable_, previous_.c_str(), 1);
  }
  ScopedEnvironment(const ScopedEnvironment&) = delete;
  ScopedEnvironment& operator=(const ScopedEnvironment&) = delete;

 private:
  const char* variable_;
  std::string previous_;
};

// The Ampere-class tiles of a GPU with less shared memory per block.
constexpr const char* kSharedMemoryCapVariable = "TILEFLASH_SMEM_LIMIT_BYTES";
struct SharedMemoryCap : ScopedEnvironment {
  explicit SharedMemoryCap(int bytes) : ScopedEnvironment(kSharedMemoryCapVariable, std::to_string(bytes)) {}
};

// Every call on the Ampere-class kernels, also on a Hopper GPU.
struct AmperePathOnly : ScopedEnvironment {
  AmperePathOnly() : ScopedEnvironment("TILEFLASH_FORCE_SM80", "1") {}
};

// The persistent Hopper forward with at most `blocks` blocks, so each walks several row
// blocks even on a small problem; the Hopper backward plans its cut last round for that
// many SMs.
constexpr const char* kPersistentBlocksVariable = "TILEFLASH_SM90_MAX_BLOCKS";
struct PersistentBlockCap : ScopedEnvironment {
  explicit PersistentBlockCap(int blocks) : ScopedEnvironment(kPersistentBlocksVariable, std::to_string(blocks)) {}
};

// Whether the selector should pick the Hopper kernels here: an sm_90 device, a build
// with sm_90a code (TILEFLASH_TESTS_WITH_SM90) and the Ampere-class path not forced.
inline bool hopper_path_active() {
#if TILEFLASH_TESTS_WITH_SM90
  int major = 0, minor = 0;
  check(cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, 0), "cudaDeviceGetAttribute");
  check(cudaDeviceGetAttribute(&minor, cudaDevAttrComputeCapabilityMinor, 0), "cudaDeviceGetAttribute");
  const char* forced = std::getenv("TILEFLASH_FORCE_SM80");
  return major == 9 && minor == 0 && !(forced != nullptr && std::string(forced) == "1");
#else
  return false;
#endif
}

// Runs `check` with the kernels the selector picks and, on a Hopper GPU, again with the
// Ampere-class kernels forced, so one GPU tests both paths.
template <class Check>
void on_each_kernel_path(Check&& check) {
  check();
  if (hopper_path_active()) {
    const AmperePathOnly ampere;
    check();
  }
}

}  // namespace tileflash::testing::gpu

#endif  // TILEFLASH_TESTS_WITH_CUDA
