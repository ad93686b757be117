// Q8_0 and Q4_0 weights (32 values a block, one float16 scale) against Q8_0 activations, two blocks
// per 512-bit step: vpdpbusd sums the unsigned bytes q_w + 128 times the signed q_x, four products
// a lane (lanes 0-7: the first block, 8-15: the second), starting from the pair's offset of
// -128 * sum(q_x), so each block's sum is exactly q_w . q_x; it then adds d_w * d_x * that sum.
#include <cstring>

#include "backend/cpu/avx512.h"
#include "backend/cpu/reduced_tiles.h"
#include "formats/dtype.h"
#include "formats/quant.h"

namespace nanoserve::cpu::tiles {

namespace {

// The float16 scales of a block and of the next (zero where there is none): lanes 0-7 and 8-15.
NANOSERVE_VNNI inline __m512 pair_scales(const uint8_t* first, const uint8_t* second) {
  uint16_t low, high = 0;
  std::memcpy(&low, first, 2);
  if (second) std::memcpy(&high, second, 2);
  const __m128i low_x8 = _mm_set1_epi16(static_cast<int16_t>(low)),
                high_x8 = _mm_set1_epi16(static_cast<int16_t>(high));
  return _mm512_cvtph_ps(_mm256_inserti128_si256(_mm256_castsi128_si256(low_x8), high_x8, 1));
}

// Q8_0: a float16 scale, then 32 int8 values.
struct Q8_0Weights {
  static constexpr int64_t kBytes = 34;
  NANOSERVE_VNNI static void load(const uint8_t* block, bool has_second, __m512i& q, __m512& d) {
    const __m256i first = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(block + 2));
    const __m256i second =
        has_second ? _mm256_loadu_si256(reinterpret_cast<const __m256i*>(block + kBytes + 2)) : _mm256_setzero_si256();
    q = _mm512_xor_si512(_mm512_inserti64x4(_mm512_castsi256_si512(first), second, 1), _mm512_set1_epi8(-128));
    d = pair_scales(block, has_second ? block + kBytes : nullptr);
  }
};

// Q4_0: a float16 scale, then 16 bytes: the low nibbles are values 0-15, the high ones 16-31; q - 8.
struct Q4_0Weights {
  static constexpr int64_t kBytes = 18;
  NANOSERVE_VNNI static void load(const uint8_t* block, bool has_second, __m512i& q, __m512& d) {
    const __m128i first = _mm_loadu_si128(reinterpret_cast<const __m128i*>(block + 2));
    const __m128i second =
        has_second ? _mm_loadu_si128(reinterpret_cast<const __m128i*>(block + kBytes + 2)) : _mm_setzero_si128();
    const __m256i both = _mm256_inserti128_si256(_mm256_castsi128_si256(first), second, 1);
    const __m256i nibble = _mm256_set1_epi8(0x0F);
    const __m256i low = _mm256_and_si256(both, nibble), high = _mm256_and_si256(_mm256_srli_epi16(both, 4), nibble);
    // [low 1, low 2, high 1, high 2] in 16-byte lanes, reordered to block 1's values, then block 2's.
    const __m512i lanes = _mm512_inserti64x4(_mm512_castsi256_si512(low), high, 1);
    q = _mm512_add_epi8(_mm512_shuffle_i64x2(lanes, lanes, _MM_SHUFFLE(3, 1, 2, 0)),
                        _mm512_set1_epi8(120));  // q - 8 + 128
    d = pair_scales(block, has_second ? block + kBytes : nullptr);
  }
};

template <class Weights>
struct PairTile {
  template <int R, int C>
  NANOSERVE_VNNI static void run(const uint8_t* const* w, const Q8Pair* const* x, int64_t blocks, int64_t /*k*/,
                                 float* out, int64_t n) {
    __m512 acc[R][C];
    zero_sums(acc);
    for (int64_t b = 0; b < blocks; b += 2) {
      const int64_t pair = b / 2;
      for (int r = 0; r < R; ++r) {
        const uint8_t* block = w[r] + b * Weights::kBytes;
        if constexpr (C == 1) prefetch_ahead<2 * Weights::kBytes>(block);  // decode only: see bf16_dot.cpp
        __m512i q;
        __m512 dw;
        Weights::load(block, b + 1 < blocks, q, dw);
        for (int c = 0; c < C; ++c) {
          const Q8Pair& xp = x[c][pair];
          const __m512i sums = _mm512_dpbusd_epi32(_mm512_load_si512(xp.offset), q, _mm512_load_si512(xp.q));
          acc[r][c] = _mm512_fmadd_ps(_mm512_mul_ps(dw, _mm512_load_ps(xp.d)), _mm512_cvtepi32_ps(sums), acc[r][c]);
        }
      }
    }
    store_sums(acc, out, n);
  }
};

// d = max|x| / 127 rounded to float16 as ggml's reference stores it, q = round(x / d) with the
// reciprocal of the unrounded d, as the reference computes it.
NANOSERVE_VNNI void quantize_block(const float* x, int8_t* q, float& d, int32_t& sum) {
  const __m512 low = _mm512_loadu_ps(x), high = _mm512_loadu_ps(x + 16);
  const float amax = _mm512_reduce_max_ps(_mm512_max_ps(_mm512_abs_ps(low), _mm512_abs_ps(high)));
  const float scale = amax / 127.0f, inverse = scale != 0 ? 1.0f / scale : 0.0f;
  d = f16_to_float(float_to_f16(scale));
  const __m512 by = _mm512_set1_ps(inverse);
  const __m512i q_low = _mm512_cvtps_epi32(_mm512_roundscale_ps(_mm512_mul_ps(low, by), _MM_FROUND_TO_NEAREST_INT));
  const __m512i q_high = _mm512_cvtps_epi32(_mm512_roundscale_ps(_mm512_mul_ps(high, by), _MM_FROUND_TO_NEAREST_INT));
  _mm_storeu_si128(reinterpret_cast<__m128i*>(q), _mm512_cvtsepi32_epi8(q_low));
  _mm_storeu_si128(reinterpret_cast<__m128i*>(q + 16), _mm512_cvtsepi32_epi8(q_high));
  sum = _mm512_reduce_add_epi32(_mm512_add_epi32(q_low, q_high));
}

NANOSERVE_VNNI void quantize_pairs(const float* x, int64_t k, Q8Pair* out) {
  const int64_t blocks = k / 32;
  for (int64_t p = 0; p < (blocks + 1) / 2; ++p) {
    Q8Pair& pair = out[p];
    pair = Q8Pair{};  // a missing second block stays zero
    for (int64_t half = 0; half < 2 && 2 * p + half < blocks; ++half) {
      float d;
      int32_t sum;
      quantize_block(x + (2 * p + half) * 32, pair.q + 32 * half, d, sum);
      for (int lane = 0; lane < 8; ++lane) pair.d[8 * half + lane] = d;
      pair.offset[8 * half] = -128 * sum;
    }
  }
}

}  // namespace

void quantize_q8_pairs(const float* x, int64_t k, Q8Pair* out) { quantize_pairs(x, k, out); }

const RowsKernel q8_0_rows = &each_column_group<PairTile<Q8_0Weights>, Q8Pair>;

const RowsKernel q4_0_rows = &each_column_group<PairTile<Q4_0Weights>, Q8Pair>;

}  // namespace nanoserve::cpu::tiles
