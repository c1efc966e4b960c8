#include "allocation_counter.h"

#include <atomic>
#include <cstddef>
#include <cstdlib>
#include <new>

namespace tileflash::bench::allocation_counter {
namespace {

std::atomic<std::int64_t> g_live{0};
std::atomic<std::int64_t> g_peak{0};

// Each block carries its size in a header in front of the pointer handed out; the
// header is as large as the block's alignment so the caller's pointer stays aligned.
void* allocate(std::size_t size, std::size_t alignment) {
  const std::size_t header = alignment < sizeof(std::max_align_t) ? sizeof(std::max_align_t) : alignment;
  void* block = nullptr;
  if (posix_memalign(&block, header, header + size) != 0) return nullptr;
  auto* user = static_cast<unsigned char*>(block) + header;
  reinterpret_cast<std::size_t*>(user)[-1] = size;
  reinterpret_cast<std::size_t*>(user)[-2] = header;
  const std::int64_t live = g_live.fetch_add(static_cast<std::int64_t>(size)) + static_cast<std::int64_t>(size);
  std::int64_t peak = g_peak.load();
  while (live > peak && !g_peak.compare_exchange_weak(peak, live)) {
  }
  return user;
}

void release(void* user) {
  if (!user) return;
  const std::size_t size = static_cast<std::size_t*>(user)[-1];
  const std::size_t header = static_cast<std::size_t*>(user)[-2];
  g_live.fetch_sub(static_cast<std::int64_t>(size));
  std::free(static_cast<unsigned char*>(user) - header);
}

void* allocate_or_throw(std::size_t size, std::size_t alignment) {
  if (void* p = allocate(size, alignment)) return p;
  throw std::bad_alloc();
}

}  // namespace

std::int64_t live_bytes() { return g_live.load(); }
void reset_peak() { g_peak.store(g_live.load()); }
std::int64_t peak_bytes() { return g_peak.load(); }

}  // namespace tileflash::bench::allocation_counter

namespace counter = tileflash::bench::allocation_counter;

void* operator new(std::size_t size) { return counter::allocate_or_throw(size, alignof(std::max_align_t)); }
void* operator new[](std::size_t size) { return counter::allocate_or_throw(size, alignof(std::max_align_t)); }
void* operator new(std::size_t size, std::align_val_t al) { return counter::allocate_or_throw(size, static_cast<std::size_t>(al)); }
void* operator new[](std::size_t size, std::align_val_t al) { return counter::allocate_or_throw(size, static_cast<std::size_t>(al)); }
void* operator new(std::size_t size, const std::nothrow_t&) noexcept { return counter::allocate(size, alignof(std::max_align_t)); }
void* operator new[](std::size_t size, const std::nothrow_t&) noexcept { return counter::allocate(size, alignof(std::max_align_t)); }
void* operator new(std::size_t size, std::align_val_t al, const std::nothrow_t&) noexcept { return counter::allocate(size, static_cast<std::size_t>(al)); }
void* operator new[](std::size_t size, std::align_val_t al, const std::nothrow_t&) noexcept { return counter::allocate(size, static_cast<std::size_t>(al)); }
void operator delete(void* p) noexcept { counter::release(p); }
void operator delete[](void* p) noexcept { counter::release(p); }
void operator delete(void* p, std::size_t) noexcept { counter::release(p); }
void operator delete[](void* p, std::size_t) noexcept { counter::release(p); }
void operator delete(void* p, std::align_val_t) noexcept { counter::release(p); }
void operator delete[](void* p, std::align_val_t) noexcept { counter::release(p); }
void operator delete(void* p, std::size_t, std::align_val_t) noexcept { counter::release(p); }
void operator delete[](void* p, std::size_t, std::align_val_t) noexcept { counter::release(p); }
void operator delete(void* p, const std::nothrow_t&) noexcept { counter::release(p); }
void operator delete[](void* p, const std::nothrow_t&) noexcept { counter::release(p); }
