// A set of compiled head-dim tiles (from CMake's generated lists) and the choice among
// them. Shared by the Ampere-class and Hopper kernels' dispatch.
#pragma once

#include <type_traits>

namespace tileflash::cuda {

template <int... kTiles>
struct HeadDimTiles {
  // The smallest tile that holds head_dim and that `usable` accepts, 0 if none does (also
  // for an empty set).
  template <class Usable>
  static constexpr int fitting(int head_dim, Usable usable) {
    int best = 0;
    ((usable(kTiles) && kTiles >= head_dim && (best == 0 || kTiles < best) ? void(best = kTiles) : void()), ...);
    return best;
  }
  static constexpr int fitting(int head_dim) {
    return fitting(head_dim, [](int) { return true; });
  }
  static constexpr int largest() {
    int best = 0;
    ((best = kTiles > best ? kTiles : best), ...);
    return best;
  }
  // Calls f(std::integral_constant<int, tile>{}) for the tile `tile` (one of kTiles).
  template <class F>
  static void dispatch(int tile, F&& f) {
    ((tile == kTiles ? f(std::integral_constant<int, kTiles>{}) : void()), ...);
  }
};

}  // namespace tileflash::cuda
