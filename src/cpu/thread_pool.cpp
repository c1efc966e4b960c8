#include "cpu/thread_pool.h"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <exception>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

namespace tileflash::cpu {
namespace {

// Passes of one call follow each other within microseconds (packing, then the tiles):
// threads poll this long for the next job before they sleep, so a pass does not pay
// an OS wake-up per thread.
constexpr std::chrono::microseconds kSpinBeforeSleep{200};

template <class Ready>
void spin_until(Ready ready) {
  const auto deadline = std::chrono::steady_clock::now() + kSpinBeforeSleep;
  while (!ready() && std::chrono::steady_clock::now() < deadline) std::this_thread::yield();
}

class ThreadPool {
 public:
  static ThreadPool& instance() {
    static ThreadPool pool;
    return pool;
  }

  ~ThreadPool() {
    {
      std::lock_guard<std::mutex> lock(mutex_);
      stopping_ = true;
    }
    wake_.notify_all();
    for (auto& w : workers_) w.join();
  }

  void run(std::int64_t num_tasks, int num_threads, const std::function<void(std::int64_t, int)>& task) {
    // One job at a time: concurrent callers queue here rather than share the workers.
    std::lock_guard<std::mutex> job_lock(job_mutex_);
    const int helpers = static_cast<int>(std::min<std::int64_t>(num_threads, num_tasks)) - 1;
    {
      std::unique_lock<std::mutex> lock(mutex_);
      while (static_cast<int>(workers_.size()) < helpers) {
        const int thread = static_cast<int>(workers_.size()) + 1;
        workers_.emplace_back([this, thread] { worker_loop(thread); });
      }
      task_ = &task;
      num_tasks_ = num_tasks;
      next_.store(0, std::memory_order_relaxed);
      pending_helpers_.store(helpers, std::memory_order_relaxed);
      error_ = nullptr;
      job_.store(next_job(job_.load(std::memory_order_relaxed), helpers), std::memory_order_release);
    }
    wake_.notify_all();
    work(0);
    spin_until([this] { return pending_helpers_.load(std::memory_order_acquire) == 0; });
    std::unique_lock<std::mutex> lock(mutex_);
    done_.wait(lock, [this] { return pending_helpers_.load(std::memory_order_acquire) == 0; });
    task_ = nullptr;
    if (error_) std::rethrow_exception(error_);
  }

 private:
  // A job is published as one word, its generation above its helper count, so a worker
  // reads both from the same job without taking the mutex.
  static std::uint64_t next_job(std::uint64_t job, int helpers) {
    return ((job >> 32) + 1) << 32 | static_cast<std::uint32_t>(helpers);
  }
  static bool takes_part(std::uint64_t job, int thread) {
    return thread <= static_cast<int>(static_cast<std::uint32_t>(job));
  }

  void work(int thread) {
    for (;;) {
      const std::int64_t index = next_.fetch_add(1, std::memory_order_relaxed);
      if (index >= num_tasks_) return;
      try {
        (*task_)(index, thread);
      } catch (...) {
        std::lock_guard<std::mutex> lock(mutex_);
        if (!error_) error_ = std::current_exception();
        // Stop handing out further tasks.
        next_.store(num_tasks_, std::memory_order_relaxed);
      }
    }
  }

  void worker_loop(int thread) {
    std::uint64_t seen = 0;
    for (;;) {
      // A spinning worker joins a job without the mutex: the workers of a job do not
      // queue on one lock (each hand-over a futex wake on a VM) before they start.
      spin_until([&] { return generation(job_.load(std::memory_order_acquire)) != generation(seen); });
      std::uint64_t job = job_.load(std::memory_order_acquire);
      if (generation(job) == generation(seen)) {
        std::unique_lock<std::mutex> lock(mutex_);
        wake_.wait(lock, [&] { return stopping_ || generation(job_.load(std::memory_order_acquire)) != generation(seen); });
        if (stopping_) return;
        job = job_.load(std::memory_order_acquire);
      }
      seen = job;
      if (!takes_part(job, thread)) continue;
      work(thread);
      if (pending_helpers_.fetch_sub(1, std::memory_order_acq_rel) == 1) {
        // Under the mutex, so the caller cannot miss it between its check and its wait.
        std::lock_guard<std::mutex> lock(mutex_);
        done_.notify_one();
      }
    }
  }

  static std::uint64_t generation(std::uint64_t job) { return job >> 32; }

  std::mutex job_mutex_;
  std::mutex mutex_;
  std::condition_variable wake_, done_;
  std::vector<std::thread> workers_;
  const std::function<void(std::int64_t, int)>* task_ = nullptr;
  std::int64_t num_tasks_ = 0;
  std::atomic<std::int64_t> next_{0};
  std::atomic<int> pending_helpers_{0};
  std::atomic<std::uint64_t> job_{0};
  bool stopping_ = false;
  std::exception_ptr error_;
};

}  // namespace

int resolve_thread_count(int requested) {
  if (requested > 0) return requested;
  const unsigned hw = std::thread::hardware_concurrency();
  return hw == 0 ? 1 : static_cast<int>(hw);
}

void parallel_for(std::int64_t num_tasks, int num_threads, const std::function<void(std::int64_t, int)>& task) {
  if (num_tasks <= 0) return;
  if (num_threads <= 1 || num_tasks == 1) {
    for (std::int64_t i = 0; i < num_tasks; ++i) task(i, 0);
    return;
  }
  ThreadPool::instance().run(num_tasks, num_threads, task);
}

}  // namespace tileflash::cpu
