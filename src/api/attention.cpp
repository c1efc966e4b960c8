// The public entry points: validate, select a kernel, run it.
#include "tileflash/attention.h"

#include <string>
#include <type_traits>

#include "api/problem.h"
#include "cpu/cpu_backend.h"
#include "cuda/cuda_backend.h"

namespace tileflash {

const char* backend_name(Backend b) {
  switch (b) {
    case Backend::automatic: return "automatic";
    case Backend::reference: return "reference";
    case Backend::cpu: return "cpu";
    case Backend::cuda: return "cuda";
  }
  return "unknown";
}

namespace {

// One selector answers "is this supported?" and "which kernel?" for both directions.
template <class Params>
KernelChoice select(const Params& params, const detail::Problem& problem) {
  Backend backend = params.backend;
  if (backend == Backend::automatic) backend = problem.device == DeviceType::cuda ? Backend::cuda : Backend::cpu;
  // The tiled CPU kernel computes in fp32 from 16- and 32-bit inputs; fp64 and fp8 tensors
  // on the CPU are the reference's alone.
  if (backend == Backend::cpu && (problem.dtype == DType::float64 || problem.dtype == DType::float8_e4m3)) {
    if (params.backend == Backend::cpu)
      throw Error("q", std::string("dtype ") + dtype_name(problem.dtype) +
                           " is supported by the reference backend only (the cpu backend takes float32, float16, bfloat16)");
    backend = Backend::reference;
  }
  switch (backend) {
    case Backend::reference: return {backend, "reference"};
    case Backend::cpu: return {backend, "tiled"};
    case Backend::cuda:
      if (problem.dtype == DType::float32 || problem.dtype == DType::float64)
        throw Error("q", std::string("dtype ") + dtype_name(problem.dtype) +
                             " is not supported on cuda (float16, bfloat16, or float8_e4m3fn forward on sm_90)");
      if constexpr (std::is_same_v<Params, BackwardParams>) return {backend, cuda::select_backward(params, problem)};
      else return {backend, cuda::select_forward(params, problem)};
    case Backend::automatic: break;
  }
  throw Error("backend", "unknown backend");
}

template <class Params>
bool supported(const Params& params, std::string* reason) {
  try {
    if constexpr (std::is_same_v<Params, BackwardParams>) select(params, detail::validate_backward(params));
    else select(params, detail::validate_forward(params));
    return true;
  } catch (const Error& e) {
    if (reason) *reason = e.what();
    return false;
  }
}

}  // namespace

KernelChoice select_forward(const ForwardParams& params) { return select(params, detail::validate_forward(params)); }
KernelChoice select_backward(const BackwardParams& params) { return select(params, detail::validate_backward(params)); }
bool is_supported(const ForwardParams& params, std::string* reason) { return supported(params, reason); }
bool is_supported(const BackwardParams& params, std::string* reason) { return supported(params, reason); }

KernelChoice forward(const ForwardParams& params) {
  const detail::Problem problem = detail::validate_forward(params);
  KernelChoice choice = select(params, problem);
  switch (choice.backend) {
    case Backend::reference: cpu::reference_forward(params, problem); break;
    case Backend::cpu: cpu::tiled_forward(params, problem); break;
    case Backend::cuda: cuda::forward(params, problem, choice.kernel); break;
    case Backend::automatic: break;
  }
  return choice;
}

KernelChoice backward(const BackwardParams& params) {
  const detail::Problem problem = detail::validate_backward(params);
  KernelChoice choice = select(params, problem);
  switch (choice.backend) {
    case Backend::reference: cpu::reference_backward(params, problem); break;
    case Backend::cpu: cpu::tiled_backward(params, problem); break;
    case Backend::cuda: cuda::backward(params, problem, choice.kernel); break;
    case Backend::automatic: break;
  }
  return choice;
}

bool cuda_available() { return cuda::available(); }
int cuda_device_count() { return cuda::device_count(); }

}  // namespace tileflash
