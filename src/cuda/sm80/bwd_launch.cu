// Backward entry points of the Ampere-class kernels (placeholder until the kernels land).
#include "cuda/sm80/launch.h"

#include "tileflash/error.h"

namespace tileflash::cuda::sm80 {

std::string backward_unsupported_reason(const BackwardParams&, const detail::Problem&) {
  return "backward on cuda is not implemented yet";
}

void run_backward(const BackwardParams&, const detail::Problem&, cudaStream_t) {
  throw Error("backend", "backward on cuda is not implemented yet");
}

}  // namespace tileflash::cuda::sm80
