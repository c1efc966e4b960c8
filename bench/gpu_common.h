// GPU helpers of tileflash-bench: checked CUDA calls, device buffers, timing with
// CUDA events and an L2 flush, and the memory probe behind `peak_bytes`.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "bench.h"
#include "host_data.h"

namespace tileflash::bench::gpu {

void check(cudaError_t status, const char* what);

// Owning device allocation; a failed cudaMalloc raises OutOfMemory with the size asked for.
class DeviceBuffer {
 public:
  DeviceBuffer() = default;
  explicit DeviceBuffer(std::size_t bytes);
  DeviceBuffer(DeviceBuffer&& other) noexcept;
  DeviceBuffer& operator=(DeviceBuffer&& other) noexcept;
  DeviceBuffer(const DeviceBuffer&) = delete;
  DeviceBuffer& operator=(const DeviceBuffer&) = delete;
  ~DeviceBuffer();

  void* get() const { return ptr_; }
  std::size_t bytes() const { return bytes_; }

 private:
  void* ptr_ = nullptr;
  std::size_t bytes_ = 0;
};

// Logical (batch, seq, heads, dim) values <-> device storage in `dtype` and `layout`.
DeviceBuffer upload(const std::vector<float>& logical, const Shape4& shape, DType dtype, Layout layout);
std::vector<float> download(const DeviceBuffer& buffer, const Shape4& shape, DType dtype, Layout layout);
// A buffer whose every byte is 0xFF (NaN in every float format), so an element the
// operation never writes shows up in the cross-backend check.
DeviceBuffer poisoned(std::size_t bytes);

// One case's tensors on the device: inputs uploaded in the case's dtype and layout, outputs
// poisoned (out in `out_dtype`, lse in float32); dout and the gradients only when the
// direction has a backward.
struct AttentionTensors {
  DeviceBuffer q, k, v, out, lse, dout, dq, dk, dv;
  DType out_dtype = DType::float32;

  AttentionTensors() = default;  // no buffers: views over it carry shapes only
  AttentionTensors(const Case& c, const HostInputs& in) : AttentionTensors(c, in, output_dtype(c)) {}
  // For a backend whose out differs from output_dtype(c) (cuDNN's FP8 forward on Hopper).
  AttentionTensors(const Case& c, const HostInputs& in, DType out_dtype);
  // What the direction wrote, back as logical fp32 values for the cross-backend check.
  HostOutputs download(const Case& c) const;
};

std::string device_name();

// Times `operation` on `stream`: before every run (warm-up included) a buffer twice
// the size of L2 is overwritten, so no run finds its inputs cached by the one before;
// each run is bracketed by CUDA events. Returns the timed runs in milliseconds.
std::vector<double> time_on_stream(cudaStream_t stream, const std::function<void()>& operation, int reps,
                                   int warmup);

// Device memory an operation takes beyond what is live when it starts: the larger of
// the high-water mark of the device's default cudaMallocAsync pool (reset first) and
// the drop in free memory across the call (allocations it keeps). A cudaMalloc that
// the operation frees again before returning is invisible to both.
std::int64_t probe_extra_memory(cudaStream_t stream, const std::function<void()>& operation);

// A stream owned by a runner.
class Stream {
 public:
  Stream();
  ~Stream();
  Stream(const Stream&) = delete;
  Stream& operator=(const Stream&) = delete;
  cudaStream_t get() const { return stream_; }

 private:
  cudaStream_t stream_ = nullptr;
};

}  // namespace tileflash::bench::gpu
