// A small persistent thread pool for the CPU backends: workers are started once and
// reused by every call, so a call costs a wake-up, not a thread creation per tile.
#pragma once

#include <cstdint>
#include <functional>

namespace tileflash::cpu {

// Resolves ForwardParams::num_threads (0 = all hardware threads).
int resolve_thread_count(int requested);

// Runs task(index, thread) for every index in [0, num_tasks), handing tasks out
// dynamically to up to num_threads threads (the caller is thread 0). `thread` lies in
// [0, num_threads) and is unique among the threads running at once, so it can index
// per-thread scratch buffers. Returns when every task has finished; the first
// exception a task throws is rethrown here.
void parallel_for(std::int64_t num_tasks, int num_threads,
                  const std::function<void(std::int64_t index, int thread)>& task);

}  // namespace tileflash::cpu
