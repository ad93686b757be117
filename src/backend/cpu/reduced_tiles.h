// What multiply_reduced (reduced_dot.h) is built from: the activation formats, and the tile kernels of
// each weight type, which multiply `count` (1-4) weight rows against every activation row:
//   out[c * n + r] = dot(w[r], x[c])   for r < count, c < x_rows.
// Every output takes the same steps whatever else the tile holds, so results do not depend on the
// batch.
#pragma once

#include <cstdint>
#include <vector>

#include "util/thread_pool.h"

namespace nanoserve::cpu::tiles {

// 64 activations as two Q8_0 blocks (ggml's quantizer: d = max|x| / 127 in float16, q = round(x / d)),
// laid out for 512-bit products against Q8_0 and Q4_0 weights. The weights enter vpdpbusd as
// unsigned bytes, q_w + 128, so each block's sum carries 128 * sum(q_x) too; `offset` starts the
// sum at minus that.
struct alignas(64) Q8Pair {
  int8_t q[64];
  float d[16];         // lanes 0-7: the first block's scale, 8-15: the second's
  int32_t offset[16];  // lane 0: -128 * sum(first block's q), lane 8: the second's; others 0
};

// 256 activations with one float scale (x ~= d * q, q = round(x / d), d = max|x| / 127), for the
// K-quants, whose sub-blocks of 16 or 32 values have offsets that multiply the sums of q.
struct alignas(64) Q8KBlock {
  int8_t q[256];
  int16_t sums[16];  // of each 16 consecutive q
  float d;
};

// 32 activations rounded to bf16, for BF16 weights.
struct alignas(64) Bf16Block {
  uint16_t v[32];
};

// k values into ceil(k / 32) blocks, the last one padded with zeros.
void round_to_bf16(const float* x, int64_t k, Bf16Block* out);
// k values (a multiple of 32) into ceil(k / 64) pairs, the last one padded with zeros.
void quantize_q8_pairs(const float* x, int64_t k, Q8Pair* out);
// k values (a multiple of 256) into k / 256 blocks.
void quantize_q8_k(const float* x, int64_t k, Q8KBlock* out);

// x [rows, k] rounded by `round` (one of the three above) into `blocks` Act blocks a row, the rows
// shared between the pool's threads.
template <class Act>
std::vector<Act> round_rows(const float* x, int64_t rows, int64_t k, int64_t blocks,
                            void (*round)(const float* x, int64_t k, Act* out)) {
  std::vector<Act> rounded(static_cast<size_t>(rows * blocks));  // [rows, blocks]
  ThreadPool::global().parallel_for(static_cast<size_t>(rows), [&](size_t begin, size_t end) {
    for (auto r = static_cast<int64_t>(begin); r < static_cast<int64_t>(end); ++r) {
      round(x + r * k, k, rounded.data() + r * blocks);
    }
  });
  return rounded;
}

// The tile kernels. w[r]: weight row r; x: activation rows of x_row_bytes each; blocks: weight
// blocks per row (of 32 values for BF16, Q8_0 and Q4_0, 256 for the K-quants); k: values per row.
using RowsKernel = void (*)(const uint8_t* const* w, int count, const uint8_t* x, int64_t x_row_bytes, int64_t x_rows,
                            int64_t blocks, int64_t k, float* out, int64_t n);
extern const RowsKernel bf16_rows;
extern const RowsKernel q8_0_rows;
extern const RowsKernel q4_0_rows;
extern const RowsKernel q4_k_rows;
extern const RowsKernel q6_k_rows;

// Weight rows are read once per token in decode, faster than the hardware prefetcher follows the
// short rows of quantized types: each block asks for the bytes 2 KiB ahead of it (measured on the
// 1B-shaped Q4_K_M file: 512 B ahead 24 tok/s, 2 KiB 36, 4 KiB 32). Past a tensor's end it asks
// for bytes that may not be mapped, which prefetching ignores.
template <int64_t kBlockBytes>
[[gnu::always_inline]] inline void prefetch_ahead(const uint8_t* block) {
  constexpr int64_t kAhead = 2048;
  for (int64_t line = 0; line < kBlockBytes; line += 64) __builtin_prefetch(block + kAhead + line);
}

// Runs Tile::run<R, C> over the activation rows, four at a time, for a tile of `count` weight rows.
// Tile::run(w, x, blocks, k, out, n) takes R weight rows and C activation rows (pointers to their
// first block).
template <class Tile, class Act>
void each_column_group(const uint8_t* const* w, int count, const uint8_t* x, int64_t x_row_bytes, int64_t x_rows,
                       int64_t blocks, int64_t k, float* out, int64_t n) {
  auto group = [&]<int C>(int64_t c) {
    const Act* xs[C];
    for (int i = 0; i < C; ++i) xs[i] = reinterpret_cast<const Act*>(x + (c + i) * x_row_bytes);
    float* o = out + c * n;
    switch (count) {
      case 4: Tile::template run<4, C>(w, xs, blocks, k, o, n); break;
      case 3: Tile::template run<3, C>(w, xs, blocks, k, o, n); break;
      case 2: Tile::template run<2, C>(w, xs, blocks, k, o, n); break;
      default: Tile::template run<1, C>(w, xs, blocks, k, o, n); break;
    }
  };
  if (x_rows < 4) {
    // Decode: weight rows one after another, so each thread reads one stream through memory
    // (4 rows side by side, 1152 bytes each for a Q4_K row of 2048, ran at half the speed).
    for (int r = 0; r < count; ++r) {
      for (int64_t c = 0; c < x_rows; ++c) {
        const Act* xs[1] = {reinterpret_cast<const Act*>(x + c * x_row_bytes)};
        Tile::template run<1, 1>(w + r, xs, blocks, k, out + c * n + r, n);
      }
    }
    return;
  }
  int64_t c = 0;
  for (; c + 4 <= x_rows; c += 4) group.template operator()<4>(c);
  for (; c < x_rows; ++c) group.template operator()<1>(c);
}

}  // namespace nanoserve::cpu::tiles
