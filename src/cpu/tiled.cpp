#include "cpu/cpu_backend.h"
#include "tileflash/error.h"

namespace tileflash::cpu {

void tiled_forward(const ForwardParams&, const detail::Problem&) {
  throw Error("backend", "the tiled cpu kernel is not built yet");
}
void tiled_backward(const BackwardParams&, const detail::Problem&) {
  throw Error("backend", "the tiled cpu kernel is not built yet");
}

}  // namespace tileflash::cpu
