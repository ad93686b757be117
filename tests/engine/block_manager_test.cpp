#include "engine/block_manager.h"

#include <gtest/gtest.h>

namespace nanoserve {
namespace {

TEST(BlockManager, AllocateReleaseAndRefcounts) {
  BlockManager m(3, 16, false);
  auto a = m.allocate(), b = m.allocate(), c = m.allocate();
  ASSERT_TRUE(a && b && c);
  EXPECT_FALSE(m.allocate().has_value());
  m.retain(*a);
  m.release(*a);
  EXPECT_EQ(m.available_blocks(), 0);
  m.release(*a);
  EXPECT_EQ(m.available_blocks(), 1);
  m.release(*b);
  m.release(*c);
  EXPECT_EQ(m.used_blocks(), 0);
}

TEST(BlockManager, PublishedBlocksAreReusedThenEvictedLeastRecentlyUsedFirst) {
  BlockManager m(2, 2, true);
  const std::vector<int32_t> t1 = {1, 2}, t2 = {3, 4};
  const uint64_t h1 = BlockManager::hash(0, t1), h2 = BlockManager::hash(h1, t2);
  auto a = m.allocate(), b = m.allocate();
  m.publish(*a, h1, t1);
  m.publish(*b, h2, t2);
  m.release(*a);  // a becomes evictable first
  m.release(*b);
  EXPECT_EQ(m.available_blocks(), 2);
  auto hit = m.lookup(h1, t1);
  ASSERT_TRUE(hit.has_value());
  EXPECT_EQ(*hit, *a);
  EXPECT_FALSE(m.lookup(h1, t2).has_value()) << "same hash, other tokens: no reuse";
  m.release(*hit);            // a is now the most recently used
  auto fresh = m.allocate();  // evicts b, the least recently used
  EXPECT_EQ(*fresh, *b);
  EXPECT_FALSE(m.lookup(h2, t2).has_value());
  EXPECT_TRUE(m.lookup(h1, t1).has_value());
  EXPECT_EQ(m.prefix_hits(), 2);
}

TEST(BlockManager, ChainedHashDependsOnEverythingBefore) {
  const std::vector<int32_t> x = {5, 6};
  EXPECT_NE(BlockManager::hash(BlockManager::hash(0, {{1, 2}}), x),
            BlockManager::hash(BlockManager::hash(0, {{1, 3}}), x));
}

}  // namespace
}  // namespace nanoserve
