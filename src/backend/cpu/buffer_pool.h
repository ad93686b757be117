// The CPU backend's memory for activations: freed blocks wait for the next allocation of their
// size. A forward step allocates the same buffers as the one before it, and memory handed back to
// the system returns as fresh pages that the kernel must clear. With the engine stepping on a
// thread of its own, glibc gave its large blocks back despite main's mallopt, and a quarter of a
// decode step (64 sequences, 128k vocabulary) went to clearing pages (perf).
#pragma once

#include <cstddef>
#include <mutex>
#include <unordered_map>

namespace nanoserve::cpu {

class BufferPool {
 public:
  BufferPool() = default;
  BufferPool(const BufferPool&) = delete;
  BufferPool& operator=(const BufferPool&) = delete;
  ~BufferPool();

  // 64-byte aligned, for full-width vector loads. Throws std::bad_alloc.
  void* take(size_t bytes);
  // Keeps the block (from take(bytes)) for the next take of its size, up to kKeptBytes in all.
  void give(void* data, size_t bytes);
  size_t kept_bytes();  // held for reuse now

 private:
  static constexpr size_t kKeptBytes = size_t{1} << 30;
  static size_t rounded(size_t bytes) { return (bytes + 63) / 64 * 64; }

  std::mutex mutex_;  // buffers are freed on other threads too (a rank's, the server's)
  std::unordered_multimap<size_t, void*> kept_;  // rounded size -> block
  size_t kept_bytes_ = 0;
};

}  // namespace nanoserve::cpu
