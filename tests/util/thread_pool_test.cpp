#include "util/thread_pool.h"

#include <gtest/gtest.h>

#include <atomic>
#include <thread>
#include <vector>

namespace nanoserve {
namespace {

TEST(ThreadPool, CoversEveryIndexExactlyOnce) {
  ThreadPool pool(3);
  for (size_t n : {0u, 1u, 2u, 5u, 1000u}) {
    std::vector<std::atomic<int>> hits(n);
    pool.parallel_for(n, [&](size_t begin, size_t end) {
      for (size_t i = begin; i < end; ++i) hits[i]++;
    });
    for (size_t i = 0; i < n; ++i) EXPECT_EQ(hits[i].load(), 1) << "n=" << n << " i=" << i;
  }
}

TEST(ThreadPool, ReusableManyTimes) {
  ThreadPool pool(2);
  std::atomic<long> sum = 0;
  for (int round = 0; round < 2000; ++round) {
    pool.parallel_for(10, [&](size_t begin, size_t end) {
      for (size_t i = begin; i < end; ++i) sum += static_cast<long>(i);
    });
  }
  EXPECT_EQ(sum.load(), 2000L * 45);
}

// CPU tensor-parallel ranks share the pool from threads of their own: their calls take turns.
TEST(ThreadPool, CallersOnSeveralThreadsTakeTurns) {
  ThreadPool pool(3);
  std::vector<std::atomic<long>> sums(4);
  std::vector<std::thread> callers;
  for (size_t c = 0; c < sums.size(); ++c) {
    callers.emplace_back([&, c] {
      for (int round = 0; round < 500; ++round) {
        pool.parallel_for(100, [&](size_t begin, size_t end) {
          for (size_t i = begin; i < end; ++i) sums[c] += static_cast<long>(i);
        });
      }
    });
  }
  for (auto& t : callers) t.join();
  for (const auto& sum : sums) EXPECT_EQ(sum.load(), 500L * 4950);
}

}  // namespace
}  // namespace nanoserve
