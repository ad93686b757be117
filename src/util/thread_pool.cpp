#include "util/thread_pool.h"

#include <immintrin.h>

#include <memory>

namespace nanoserve {

namespace {

// About 50-100 microseconds of spinning before a worker sleeps.
constexpr int kSpinIterations = 20000;

std::unique_ptr<ThreadPool>& global_pool() {
  static std::unique_ptr<ThreadPool> pool;
  return pool;
}

std::mutex& global_pool_mutex() {
  static std::mutex mutex;
  return mutex;
}

std::pair<size_t, size_t> split(size_t n, int parts, int index) {
  return {n * static_cast<size_t>(index) / static_cast<size_t>(parts),
          n * static_cast<size_t>(index + 1) / static_cast<size_t>(parts)};
}

}  // namespace

ThreadPool::ThreadPool(int threads) {
  if (threads <= 0) threads = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  for (int i = 1; i < threads; ++i) workers_.emplace_back([this, i] { worker_loop(i); });
}

ThreadPool::~ThreadPool() {
  {
    std::lock_guard lock(mutex_);
    stopping_ = true;
  }
  wake_.notify_all();
  for (auto& w : workers_) w.join();
}

void ThreadPool::parallel_for(size_t n, const std::function<void(size_t, size_t)>& fn) {
  if (workers_.empty() || n < 2) {
    fn(0, n);
    return;
  }
  std::lock_guard one_caller(callers_);
  {
    // Publishing under the mutex means a worker that checked and is about to sleep cannot miss it.
    std::lock_guard lock(mutex_);
    job_ = &fn;
    job_size_ = n;
    pending_.store(static_cast<int>(workers_.size()), std::memory_order_relaxed);
    generation_.fetch_add(1, std::memory_order_release);
  }
  wake_.notify_all();
  auto [begin, end] = split(n, size(), 0);
  fn(begin, end);
  // Past the spin, yield: a worker that the OS has descheduled (more runnable threads than cores,
  // as when tests run side by side) gets this core instead of waiting out a time slice.
  for (int i = 0; pending_.load(std::memory_order_acquire) != 0; ++i) {
    if (i < kSpinIterations) {
      _mm_pause();
    } else {
      std::this_thread::yield();
    }
  }
}

bool ThreadPool::wait_for_job(uint64_t seen) {
  for (int i = 0; i < kSpinIterations; ++i) {
    if (generation_.load(std::memory_order_acquire) != seen) return true;
    if (stopping_.load(std::memory_order_relaxed)) return false;
    _mm_pause();
  }
  std::unique_lock lock(mutex_);
  wake_.wait(lock, [&] { return stopping_ || generation_.load(std::memory_order_acquire) != seen; });
  return !stopping_;
}

void ThreadPool::worker_loop(int index) {
  uint64_t seen = 0;
  while (wait_for_job(seen)) {
    const std::function<void(size_t, size_t)>* job;
    size_t n;
    {
      std::lock_guard lock(mutex_);
      seen = generation_.load(std::memory_order_acquire);
      job = job_;
      n = job_size_;
    }
    auto [begin, end] = split(n, size(), index);
    if (begin < end) (*job)(begin, end);
    pending_.fetch_sub(1, std::memory_order_acq_rel);
  }
}

// Under a lock: the first use may come from several threads at once (CPU tensor-parallel ranks).
ThreadPool& ThreadPool::global() {
  std::lock_guard lock(global_pool_mutex());
  auto& pool = global_pool();
  if (!pool) pool = std::make_unique<ThreadPool>(0);
  return *pool;
}

void ThreadPool::set_global_threads(int threads) {
  std::lock_guard lock(global_pool_mutex());
  global_pool() = std::make_unique<ThreadPool>(threads);
}

}  // namespace nanoserve
