#include "backend/cpu/buffer_pool.h"

#include <algorithm>
#include <cstdlib>
#include <new>

namespace nanoserve::cpu {

BufferPool::~BufferPool() {
  for (const auto& [size, data] : kept_) std::free(data);
}

void* BufferPool::take(size_t bytes) {
  const size_t size = rounded(std::max<size_t>(bytes, 1));
  {
    std::lock_guard lock(mutex_);
    if (auto it = kept_.find(size); it != kept_.end()) {
      void* data = it->second;
      kept_.erase(it);
      kept_bytes_ -= size;
      return data;
    }
  }
  void* data = std::aligned_alloc(64, size);
  if (!data) throw std::bad_alloc();
  return data;
}

void BufferPool::give(void* data, size_t bytes) {
  const size_t size = rounded(std::max<size_t>(bytes, 1));
  {
    std::lock_guard lock(mutex_);
    if (kept_bytes_ + size <= kKeptBytes) {
      kept_.emplace(size, data);
      kept_bytes_ += size;
      return;
    }
  }
  std::free(data);
}

size_t BufferPool::kept_bytes() {
  std::lock_guard lock(mutex_);
  return kept_bytes_;
}

}  // namespace nanoserve::cpu
