#include "util/mapped_file.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <fstream>
#include <numeric>
#include <string>
#include <vector>

namespace nanoserve {
namespace {

// RssFile of /proc/self/status: the resident pages of mapped files, in KiB.
int64_t resident_file_kib() {
  std::ifstream status("/proc/self/status");
  for (std::string line; std::getline(status, line);) {
    if (line.rfind("RssFile:", 0) == 0) return std::stoll(line.substr(8));
  }
  return -1;
}

// A mapped file's pages, read in and then released, leave the process's resident set and read
// back the same bytes; anonymous memory released keeps its contents.
TEST(ReleasePages, DropsAMappedFilesPagesAndLosesNothing) {
  const std::string path = ::testing::TempDir() + "release_pages.bin";
  std::vector<uint8_t> bytes(32 << 20);
  std::iota(bytes.begin(), bytes.end(), uint8_t{7});
  std::FILE* out = std::fopen(path.c_str(), "wb");
  ASSERT_TRUE(out && std::fwrite(bytes.data(), 1, bytes.size(), out) == bytes.size());
  ASSERT_EQ(std::fflush(out), 0);
  ASSERT_EQ(::fsync(::fileno(out)), 0);  // clean pages: the kernel reclaims those at once
  std::fclose(out);
  {
    const MappedFile file(path);
    file.prefetch(0, file.size());
    const int64_t before = resident_file_kib();
    if (!release_pages(file.data(), file.size())) GTEST_SKIP() << "this kernel has no MADV_PAGEOUT";
    const int64_t after = resident_file_kib();
    EXPECT_LT(after, before - 24 * 1024) << "RssFile " << before << " KiB -> " << after << " KiB";
    EXPECT_TRUE(std::equal(bytes.begin(), bytes.end(), file.data()));
  }
  std::remove(path.c_str());
  std::vector<uint8_t> anonymous = bytes;
  EXPECT_TRUE(release_pages(anonymous.data(), anonymous.size()));
  EXPECT_EQ(anonymous, bytes);
}

}  // namespace
}  // namespace nanoserve
