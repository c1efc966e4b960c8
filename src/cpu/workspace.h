// fp32 working memory of the tiled kernels, recycled across calls: a released buffer
// goes back to a process-wide pool, so the next call reuses pages that are already
// mapped instead of having the OS fault in and zero fresh ones. Contents start
// uninitialised; the tasks that fill a buffer touch it first, in parallel.
#pragma once

#include <cstdint>
#include <memory>

namespace tileflash::cpu {

class Workspace {
 public:
  explicit Workspace(std::int64_t floats);
  ~Workspace();
  Workspace(const Workspace&) = delete;
  Workspace& operator=(const Workspace&) = delete;

  float* data() const { return buffer_.get(); }

 private:
  std::unique_ptr<float[]> buffer_;
  std::int64_t capacity_ = 0;
};

}  // namespace tileflash::cpu
