// The CPU backend's buffer pool: a freed block comes back for the next request of its size, aligned,
// and the pool keeps no more than its bound.
#include "backend/cpu/buffer_pool.h"

#include <gtest/gtest.h>

#include <cstdint>
#include <cstring>

namespace nanoserve::cpu {
namespace {

TEST(BufferPool, AFreedBlockServesTheNextTakeOfItsSize) {
  BufferPool pool;
  void* a = pool.take(1000);
  EXPECT_EQ(reinterpret_cast<uintptr_t>(a) % 64, 0u);
  std::memset(a, 1, 1000);
  pool.give(a, 1000);
  void* other = pool.take(5000);  // another size: a new block
  EXPECT_NE(other, a);
  EXPECT_EQ(pool.take(1000), a);  // 1000 rounds to 1024, as does 1001..1024
  void* b = pool.take(1001);
  EXPECT_NE(b, a);
  pool.give(a, 1000);
  pool.give(b, 1001);
  pool.give(other, 5000);
  void* again = pool.take(1024);
  EXPECT_TRUE(again == a || again == b);
  pool.give(again, 1024);
}

TEST(BufferPool, KeepsNoMoreThanItsBound) {
  BufferPool pool;
  constexpr size_t kBig = size_t{600} << 20;  // two of these pass the 1 GiB bound
  void* a = pool.take(kBig);
  void* b = pool.take(kBig);
  pool.give(a, kBig);
  EXPECT_EQ(pool.kept_bytes(), kBig);
  pool.give(b, kBig);  // freed, not kept
  EXPECT_EQ(pool.kept_bytes(), kBig);
  EXPECT_EQ(pool.take(kBig), a);
  EXPECT_EQ(pool.kept_bytes(), 0u);
  pool.give(a, kBig);
}

}  // namespace
}  // namespace nanoserve::cpu
