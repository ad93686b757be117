// A fixed pool of worker threads for data-parallel loops. Workers start once; between calls they
// spin briefly (a decode step issues dozens of small loops back to back, and a sleeping thread takes
// tens of microseconds to wake), then sleep on a condition variable.
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstddef>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

namespace nanoserve {

class ThreadPool {
 public:
  explicit ThreadPool(int threads);  // threads <= 0: one per hardware thread
  ~ThreadPool();
  ThreadPool(const ThreadPool&) = delete;
  ThreadPool& operator=(const ThreadPool&) = delete;

  int size() const { return static_cast<int>(workers_.size()) + 1; }

  // Splits [0, n) into size() contiguous ranges (static split) and runs fn(begin, end) on each;
  // the calling thread takes the first range. Returns when all are done. Not reentrant; callers on
  // several threads (CPU tensor-parallel ranks) take turns.
  void parallel_for(size_t n, const std::function<void(size_t, size_t)>& fn);

  // The process-wide pool used by the kernels; sized by set_global_threads (default: all cores),
  // which replaces it: call it before any thread uses the pool.
  static ThreadPool& global();
  static void set_global_threads(int threads);

 private:
  void worker_loop(int index);
  bool wait_for_job(uint64_t seen);  // false when stopping

  std::vector<std::thread> workers_;
  std::mutex callers_;  // held for a whole parallel_for
  std::mutex mutex_;
  std::condition_variable wake_;
  const std::function<void(size_t, size_t)>* job_ = nullptr;
  size_t job_size_ = 0;
  std::atomic<uint64_t> generation_{0};  // bumped once per parallel_for
  std::atomic<int> pending_{0};          // workers still running the current job
  std::atomic<bool> stopping_{false};
};

}  // namespace nanoserve
