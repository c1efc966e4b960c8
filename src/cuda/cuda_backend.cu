// The CUDA backend as the dispatcher sees it: device discovery, the kernel choice, and
// the launch on the tensors' device and the caller's stream.
#include "cuda/cuda_backend.h"

#include <cuda_runtime.h>

#include <string>

#include "cuda/sm80/launch.h"
#include "cuda/sm80/launch_args.h"
#include "cuda/sm90/launch.h"
#include "tileflash/error.h"

namespace tileflash::cuda {
namespace {

// The sm80 entry points report "argument: rule"; a reason without an argument blames the backend.
[[noreturn]] void throw_unsupported(const std::string& reason) {
  const auto colon = reason.find(": ");
  if (colon == std::string::npos || reason.find(' ') < colon) throw Error("backend", reason);
  throw Error(reason.substr(0, colon), reason.substr(colon + 2));
}

void check_device(int device_index) {
  const int count = device_count();
  if (count == 0) throw Error("q", "is a cuda tensor, but no CUDA device is visible to this process");
  if (device_index < 0 || device_index >= count)
    throw Error("q", "device_index " + std::to_string(device_index) + " is not one of the " + std::to_string(count) +
                         " visible CUDA devices");
}

// Makes the tensors' device current for the launch and restores the caller's afterwards.
class DeviceGuard {
 public:
  explicit DeviceGuard(int device) {
    sm80::check_cuda(cudaGetDevice(&previous_), "cudaGetDevice");
    if (device != previous_) sm80::check_cuda(cudaSetDevice(device), "cudaSetDevice");
  }
  ~DeviceGuard() { cudaSetDevice(previous_); }
  DeviceGuard(const DeviceGuard&) = delete;
  DeviceGuard& operator=(const DeviceGuard&) = delete;

 private:
  int previous_ = 0;
};

}  // namespace

bool available() { return true; }

int device_count() {
  int count = 0;
  if (cudaGetDeviceCount(&count) != cudaSuccess) {
    cudaGetLastError();  // a machine without a driver is not an error state to keep
    return 0;
  }
  return count;
}

// The Hopper kernel where it takes the call, else the Ampere-class one, which covers every
// feature (so the sm90 path's reasons for declining are never errors).
std::string select_forward(const ForwardParams& params, const detail::Problem& problem) {
  if (problem.dtype == DType::float8_e4m3) {
    const std::string reason = sm90::fp8_forward_unsupported_reason(params, problem);
    if (!reason.empty()) throw_unsupported(reason);
    return "sm90";
  }
  const std::string reason = sm80::forward_unsupported_reason(params, problem);
  if (!reason.empty()) throw_unsupported(reason);
  return sm90::forward_unsupported_reason(params, problem).empty() ? "sm90" : "sm80";
}

std::string select_backward(const BackwardParams& params, const detail::Problem& problem) {
  const std::string reason = sm80::backward_unsupported_reason(params, problem);
  if (!reason.empty()) throw_unsupported(reason);
  return sm90::backward_unsupported_reason(params, problem).empty() ? "sm90" : "sm80";
}

void forward(const ForwardParams& params, const detail::Problem& problem, const std::string& kernel) {
  check_device(params.q.device_index);
  DeviceGuard guard(params.q.device_index);
  const auto stream = static_cast<cudaStream_t>(params.cuda_stream);
  if (kernel == "sm90") sm90::run_forward(params, problem, stream);
  else sm80::run_forward(params, problem, stream);
}

void backward(const BackwardParams& params, const detail::Problem& problem, const std::string& kernel) {
  check_device(params.q.device_index);
  DeviceGuard guard(params.q.device_index);
  const auto stream = static_cast<cudaStream_t>(params.cuda_stream);
  if (kernel == "sm90") sm90::run_backward(params, problem, stream);
  else sm80::run_backward(params, problem, stream);
}

}  // namespace tileflash::cuda
