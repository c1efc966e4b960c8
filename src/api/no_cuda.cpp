// The CUDA backend of a build without CUDA: present, never selected.
#include "cuda/cuda_backend.h"
#include "tileflash/error.h"

namespace tileflash::cuda {

bool available() { return false; }
int device_count() { return 0; }

std::string select_forward(const ForwardParams&, const detail::Problem&) {
  throw Error("q", "is a cuda tensor, but this tileflash build has no CUDA backend (configure with CUDA)");
}
std::string select_backward(const BackwardParams&, const detail::Problem&) {
  throw Error("q", "is a cuda tensor, but this tileflash build has no CUDA backend (configure with CUDA)");
}
void forward(const ForwardParams& p, const detail::Problem& pr, const std::string&) { select_forward(p, pr); }
void backward(const BackwardParams& p, const detail::Problem& pr, const std::string&) { select_backward(p, pr); }

}  // namespace tileflash::cuda
