// A fixed pool of worker threads for data-parallel loops. Workers start once and wait between
// calls, so a parallel_for costs a wake-up, not a thread start.
#pragma once

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
  // the calling thread takes the first range. Returns when all are done.
  void parallel_for(size_t n, const std::function<void(size_t, size_t)>& fn);

  // The process-wide pool used by the kernels; sized by set_global_threads (default: all cores).
  static ThreadPool& global();
  static void set_global_threads(int threads);

 private:
  void worker_loop(int index);

  std::vector<std::thread> workers_;
  std::mutex mutex_;
  std::condition_variable wake_, done_;
  const std::function<void(size_t, size_t)>* job_ = nullptr;
  size_t job_size_ = 0;
  uint64_t generation_ = 0;
  int pending_ = 0;
  bool stopping_ = false;
};

}  // namespace nanoserve
