// A read-only memory-mapped file. Weights are used in place from the mapping: no copy.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

namespace nanoserve {

class MappedFile {
 public:
  explicit MappedFile(const std::string& path);  // throws Error naming the path
  ~MappedFile();
  MappedFile(const MappedFile&) = delete;
  MappedFile& operator=(const MappedFile&) = delete;

  const uint8_t* data() const { return data_; }
  size_t size() const { return size_; }
  const std::string& path() const { return path_; }

  // Reads the pages of [offset, offset + length) into memory now, so that the first forward pass
  // does not stall on page faults.
  void prefetch(size_t offset, size_t length) const;

 private:
  std::string path_;
  const uint8_t* data_ = nullptr;
  size_t size_ = 0;
};

// Asks the kernel to reclaim the whole pages inside [data, data + bytes) now (MADV_PAGEOUT), for
// bytes a copy has replaced. Nothing is lost: clean pages of a mapped file are read again if
// touched, and anonymous memory is at most swapped out. False where the kernel refused (before Linux
// 5.4 it has no MADV_PAGEOUT), which leaves the pages as they were.
bool release_pages(const void* data, size_t bytes);

}  // namespace nanoserve
