// Device memory for one call, allocated and released in stream order (the stream's memory
// pool), released also when a launch between throws.
#pragma once

#include <cuda_runtime.h>

#include <cstddef>
#include <cstdint>

#include "cuda/sm80/launch_args.h"

namespace tileflash::cuda {

class StreamWorkspace {
 public:
  // `what` names the allocation in the error when it fails.
  StreamWorkspace(std::int64_t bytes, cudaStream_t stream, const char* what) : stream_(stream) {
    sm80::check_cuda(cudaMallocAsync(reinterpret_cast<void**>(&data_), static_cast<std::size_t>(bytes), stream), what);
  }
  ~StreamWorkspace() { cudaFreeAsync(data_, stream_); }
  StreamWorkspace(const StreamWorkspace&) = delete;
  StreamWorkspace& operator=(const StreamWorkspace&) = delete;
  unsigned char* data() const { return data_; }

 private:
  unsigned char* data_ = nullptr;
  cudaStream_t stream_;
};

}  // namespace tileflash::cuda
