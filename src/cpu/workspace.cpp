#include "cpu/workspace.h"

#include <algorithm>
#include <mutex>
#include <utility>
#include <vector>

namespace tileflash::cpu {
namespace {

// A handful of buffers is what one call holds at once; keeping the largest few covers
// repeated calls of one shape without hoarding memory across shapes.
constexpr std::size_t kPooledBuffers = 12;

struct Pool {
  std::mutex mutex;
  std::vector<std::pair<std::int64_t, std::unique_ptr<float[]>>> free;  // (capacity, buffer)
};

Pool& pool() {
  static Pool p;
  return p;
}

}  // namespace

Workspace::Workspace(std::int64_t floats) {
  const std::int64_t wanted = std::max<std::int64_t>(floats, 1);
  {
    Pool& p = pool();
    std::lock_guard<std::mutex> lock(p.mutex);
    auto best = p.free.end();
    for (auto it = p.free.begin(); it != p.free.end(); ++it)
      if (it->first >= wanted && (best == p.free.end() || it->first < best->first)) best = it;
    if (best != p.free.end()) {
      capacity_ = best->first;
      buffer_ = std::move(best->second);
      p.free.erase(best);
      return;
    }
  }
  capacity_ = wanted;
  buffer_.reset(new float[static_cast<std::size_t>(wanted)]);
}

Workspace::~Workspace() {
  if (!buffer_) return;
  Pool& p = pool();
  std::lock_guard<std::mutex> lock(p.mutex);
  p.free.emplace_back(capacity_, std::move(buffer_));
  if (p.free.size() > kPooledBuffers) {
    auto smallest =
        std::min_element(p.free.begin(), p.free.end(), [](const auto& a, const auto& b) { return a.first < b.first; });
    p.free.erase(smallest);
  }
}

}  // namespace tileflash::cpu
