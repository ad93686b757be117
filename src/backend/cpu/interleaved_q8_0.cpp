#include "backend/cpu/interleaved_q8_0.h"

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <new>
#include <vector>

#include "backend/cpu/avx512.h"
#include "backend/cpu/reduced_tiles.h"
#include "backend/cpu/tiling.h"
#include "formats/dtype.h"
#include "util/error.h"
#include "util/thread_pool.h"

namespace nanoserve::cpu {

namespace {

constexpr int64_t kGroupRows = 16;
constexpr int64_t kBlockBytes = 34;                       // Q8_0 in the file: float16 scale, 32 int8
constexpr int64_t kWordsBytes = 8 * 64;                   // one block of 16 rows, as 8 words
constexpr int64_t kUnitBytes = 2 * kWordsBytes + 2 * 32;  // a pair of blocks, then their scales
constexpr int kMaxColumns = 8;                            // activation rows a tile takes at once

// Row `row`'s block b of the file into its lanes of a unit (b's half of it); an absent block has
// zero values and scale.
void pack_block(const uint8_t* block, int64_t row, int64_t half, uint8_t* unit) {
  uint8_t* words = unit + half * kWordsBytes + row * 4;
  uint8_t* scale = unit + 2 * kWordsBytes + half * 32 + row * 2;
  if (!block) {
    for (int j = 0; j < 8; ++j) std::memset(words + j * 64, 128, 4);
    std::memset(scale, 0, 2);
    return;
  }
  std::memcpy(scale, block, 2);
  for (int j = 0; j < 8; ++j) {
    uint32_t four;
    std::memcpy(&four, block + 2 + 4 * j, 4);
    four ^= 0x80808080u;  // q + 128 for each signed byte
    std::memcpy(words + j * 64, &four, 4);
  }
}

// One group of 16 weight rows against C activation rows: out[c * n + r] for the group's first
// `valid` rows.
template <int C>
NANOSERVE_VNNI void group_tile(const uint8_t* group, int64_t pairs, const tiles::Q8Pair* const* x, float* out,
                               int64_t n, int valid) {
  __m512 acc[C];
  for (auto& a : acc) a = _mm512_setzero_ps();
  for (int64_t p = 0; p < pairs; ++p) {
    const uint8_t* unit = group + p * kUnitBytes;
    const uint8_t* scales = unit + 2 * kWordsBytes;
    const __m512 weight_scales[2] = {_mm512_cvtph_ps(_mm256_load_si256(reinterpret_cast<const __m256i*>(scales))),
                                     _mm512_cvtph_ps(_mm256_load_si256(reinterpret_cast<const __m256i*>(scales + 32)))};
    for (int half = 0; half < 2; ++half) {
      __m512i w[8];
      for (int j = 0; j < 8; ++j) w[j] = _mm512_load_si512(unit + half * kWordsBytes + j * 64);
      for (int c = 0; c < C; ++c) {
        const tiles::Q8Pair& xp = x[c][p];
        int32_t xw[8];  // the block's activations, 4 to a word
        std::memcpy(xw, xp.q + 32 * half, sizeof(xw));
        // Two chains of four, so each waits on half as many products.
        __m512i even = _mm512_set1_epi32(xp.offset[8 * half]), odd = _mm512_setzero_si512();
        for (int j = 0; j < 4; ++j) {
          even = _mm512_dpbusd_epi32(even, w[j], _mm512_set1_epi32(xw[j]));
          odd = _mm512_dpbusd_epi32(odd, w[j + 4], _mm512_set1_epi32(xw[j + 4]));
        }
        const __m512 d = _mm512_mul_ps(weight_scales[half], _mm512_set1_ps(xp.d[8 * half]));
        acc[c] = _mm512_fmadd_ps(d, _mm512_cvtepi32_ps(_mm512_add_epi32(even, odd)), acc[c]);
      }
    }
  }
  const __mmask16 rows = static_cast<__mmask16>((1u << valid) - 1);
  for (int c = 0; c < C; ++c) _mm512_mask_storeu_ps(out + c * n, rows, acc[c]);
}

using GroupTile = void (*)(const uint8_t*, int64_t, const tiles::Q8Pair* const*, float*, int64_t, int);
constexpr GroupTile kTiles[kMaxColumns] = {group_tile<1>, group_tile<2>, group_tile<3>, group_tile<4>,
                                           group_tile<5>, group_tile<6>, group_tile<7>, group_tile<8>};

}  // namespace

void InterleavedQ8_0::Free::operator()(uint8_t* p) const { std::free(p); }

InterleavedQ8_0::InterleavedQ8_0(const TensorView& w) : n_(w.shape.at(0)), k_(w.shape.at(1)) {
  if (w.dtype != DType::Q8_0 || w.shape.size() != 2 || k_ % 32 != 0) {
    fail("{}: {} {} cannot be interleaved (expects 2-D Q8_0 with rows of a multiple of 32 values)", w.name,
         dtype_name(w.dtype), shape_str(w.shape));
  }
  const int64_t blocks = k_ / 32, groups = (n_ + kGroupRows - 1) / kGroupRows;
  pairs_ = (blocks + 1) / 2;
  bytes_ = static_cast<size_t>(groups * pairs_ * kUnitBytes);  // a multiple of 64, as aligned_alloc wants
  data_.reset(static_cast<uint8_t*>(std::aligned_alloc(64, std::max<size_t>(bytes_, 64))));
  if (!data_) throw std::bad_alloc();
  const int64_t row_bytes = dtype_bytes(DType::Q8_0, w.stride());
  ThreadPool::global().parallel_for(static_cast<size_t>(groups), [&](size_t begin, size_t end) {
    for (auto g = static_cast<int64_t>(begin); g < static_cast<int64_t>(end); ++g) {
      uint8_t* group = data_.get() + g * pairs_ * kUnitBytes;
      for (int64_t r = 0; r < kGroupRows; ++r) {
        const int64_t row = g * kGroupRows + r;
        for (int64_t b = 0; b < 2 * pairs_; ++b) {
          const uint8_t* block = row < n_ && b < blocks ? w.data + row * row_bytes + b * kBlockBytes : nullptr;
          pack_block(block, r, b % 2, group + (b / 2) * kUnitBytes);
        }
      }
    }
  });
}

void InterleavedQ8_0::multiply(const float* x, int64_t rows, float* out) const {
  const std::vector<tiles::Q8Pair> xq = tiles::round_rows(x, rows, k_, pairs_, tiles::quantize_q8_pairs);
  const int64_t groups = (n_ + kGroupRows - 1) / kGroupRows;
  // Each thread takes a run of groups and passes over them once per block of activation rows, which
  // stay in cache meanwhile. In decode that run is one contiguous stream, which the hardware
  // prefetcher follows: asking for the bytes 2 KiB ahead, as the file layout's kernels do
  // (reduced_tiles.h), measured slower here (1B-shaped Q8_0, 2 threads: 19.3 tok/s against 21.3).
  ThreadPool::global().parallel_for(static_cast<size_t>(groups), [&](size_t begin, size_t end) {
    for (int64_t r_begin = 0; r_begin < rows; r_begin += kActivationBlock) {
      const int64_t r_end = std::min(rows, r_begin + kActivationBlock);
      for (auto g = static_cast<int64_t>(begin); g < static_cast<int64_t>(end); ++g) {
        const uint8_t* group = data_.get() + g * pairs_ * kUnitBytes;
        const int valid = static_cast<int>(std::min(kGroupRows, n_ - g * kGroupRows));
        for (int64_t c = r_begin; c < r_end; c += kMaxColumns) {
          const int count = static_cast<int>(std::min<int64_t>(kMaxColumns, r_end - c));
          const tiles::Q8Pair* xs[kMaxColumns];
          for (int i = 0; i < count; ++i) xs[i] = xq.data() + (c + i) * pairs_;
          kTiles[count - 1](group, pairs_, xs, out + c * n_ + g * kGroupRows, n_, valid);
        }
      }
    }
  });
}

}  // namespace nanoserve::cpu
