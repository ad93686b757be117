// How the CPU's matrix products split their work: weight rows in tiles of kRowTile, shared between
// the pool's threads; each thread passes over its tiles once per block of kActivationBlock
// activation rows, which stay in cache while every tile passes over them. Each output is computed
// whole by one tile, so the blocking never changes a result.
#pragma once

#include <algorithm>
#include <cstdint>

#include "util/thread_pool.h"

namespace nanoserve::cpu {

constexpr int64_t kRowTile = 4;
constexpr int64_t kActivationBlock = 64;

// fn(r0, count, r_begin, block): weight rows [r0, r0 + count) against activation rows
// [r_begin, r_begin + block), for every tile of n weight rows and block of `rows` activation rows.
template <typename Fn>
void each_tile_and_block(int64_t n, int64_t rows, Fn&& fn) {
  const int64_t tiles = (n + kRowTile - 1) / kRowTile;
  ThreadPool::global().parallel_for(static_cast<size_t>(tiles), [&](size_t begin, size_t end) {
    for (int64_t r_begin = 0; r_begin < rows; r_begin += kActivationBlock) {
      const int64_t block = std::min(kActivationBlock, rows - r_begin);
      for (size_t t = begin; t < end; ++t) {
        const int64_t r0 = static_cast<int64_t>(t) * kRowTile;
        fn(r0, std::min(kRowTile, n - r0), r_begin, block);
      }
    }
  });
}

}  // namespace nanoserve::cpu
