// Q4_K and Q6_K weights (256 values a block) against Q8KBlock activations. A weight block is
// unpacked once into 256 unsigned bytes in value order plus a 16-bit scale per byte pair; then for
// each activation row, vpmaddubsw multiplies byte pairs (u8 * s8, exact in 16 bits) and vpdpwssd
// multiplies those by the sub-block's scale and sums them in int32. The offsets (Q4_K's minimums,
// Q6_K's 32) multiply the activation block's sums of 16 values.
#include <cstring>

#include "backend/cpu/avx512.h"
#include "backend/cpu/reduced_tiles.h"
#include "formats/dtype.h"

namespace nanoserve::cpu::tiles {

namespace {

// vpermw indices: lane l of scale register j takes entry first + (64 j + 2 l) / per (the sub-block
// of the byte pair that lane l of vpmaddubsw's result covers, for sub-blocks of `per` values).
template <int kPer, int kFirst = 0>
struct ScaleIndex {
  alignas(64) int16_t lanes[4][32];
  constexpr ScaleIndex() : lanes{} {
    for (int j = 0; j < 4; ++j) {
      for (int l = 0; l < 32; ++l) lanes[j][l] = static_cast<int16_t>(kFirst + (64 * j + 2 * l) / kPer);
    }
  }
};

// One weight block made ready: 256 unsigned values in order, 64 a register, and the 16-bit scale of
// each byte pair.
struct Unpacked {
  __m512i q[4];
  __m512i scales[4];
  __m256i offsets;  // 16-bit: what multiplies each activation sum of 16 values
  float d, d_offset;
};

// sum over the block of scale * q_w * q_x, in int32 lanes.
NANOSERVE_VNNI inline __m512i scaled_sums(const Unpacked& u, const Q8KBlock& x) {
  __m512i sums = _mm512_setzero_si512();
  for (int j = 0; j < 4; ++j) {
    const __m512i pairs = _mm512_maddubs_epi16(u.q[j], _mm512_load_si512(x.q + 64 * j));
    sums = _mm512_dpwssd_epi32(sums, pairs, u.scales[j]);
  }
  return sums;
}

// sum over the block of offset * sum(q_x), in eight int32 lanes (zero-extended to 16).
NANOSERVE_VNNI inline __m512i offset_sums(const Unpacked& u, const Q8KBlock& x) {
  const __m256i sums = _mm256_madd_epi16(u.offsets, _mm256_load_si256(reinterpret_cast<const __m256i*>(x.sums)));
  return _mm512_zextsi256_si512(sums);
}

// Q4_K: d, dmin (float16), 12 bytes of 6-bit scales and minimums for 8 sub-blocks of 32, then 128
// bytes: chunk c's 32 bytes hold values 64c..64c+31 in their low nibbles and the next 32 in their
// high ones. A value is d * scale * q - dmin * min.
struct Q4K {
  static constexpr int64_t kBytes = 144;
  static constexpr ScaleIndex<32> kScales{};

  NANOSERVE_VNNI static void unpack(const uint8_t* b, Unpacked& u) {
    u.d = f16_at(b);
    u.d_offset = f16_at(b + 2);
    uint32_t low, mid, high;  // scale bytes 0-3, 4-7, 8-11
    std::memcpy(&low, b + 4, 4);
    std::memcpy(&mid, b + 8, 4);
    std::memcpy(&high, b + 12, 4);
    const uint32_t scales_0_3 = low & 0x3F3F3F3F, mins_0_3 = mid & 0x3F3F3F3F;
    const uint32_t scales_4_7 = (high & 0x0F0F0F0F) | (((low >> 6) & 0x03030303) << 4);
    const uint32_t mins_4_7 = ((high >> 4) & 0x0F0F0F0F) | (((mid >> 6) & 0x03030303) << 4);
    const __m128i bytes = _mm_set_epi32(static_cast<int>(mins_4_7), static_cast<int>(mins_0_3),
                                        static_cast<int>(scales_4_7), static_cast<int>(scales_0_3));
    const __m256i words = _mm256_cvtepu8_epi16(bytes);  // 8 scales, then 8 minimums
    const __m512i table = _mm512_castsi256_si512(words);
    for (int j = 0; j < 4; ++j) {
      u.scales[j] = _mm512_permutexvar_epi16(_mm512_load_si512(kScales.lanes[j]), table);
    }
    // Each minimum twice: sub-block s covers activation sums 2s and 2s + 1.
    const __m256i min_lanes = _mm256_setr_epi16(8, 8, 9, 9, 10, 10, 11, 11, 12, 12, 13, 13, 14, 14, 15, 15);
    u.offsets = _mm256_permutexvar_epi16(min_lanes, words);
    const __m256i nibble = _mm256_set1_epi8(0x0F);
    for (int c = 0; c < 4; ++c) {
      const __m256i raw = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(b + 16 + 32 * c));
      const __m256i lo = _mm256_and_si256(raw, nibble), hi = _mm256_and_si256(_mm256_srli_epi16(raw, 4), nibble);
      u.q[c] = _mm512_inserti64x4(_mm512_castsi256_si512(lo), hi, 1);
    }
  }

  NANOSERVE_VNNI static __m512 dot(const Unpacked& u, const Q8KBlock& x, __m512 acc) {
    acc = _mm512_fmadd_ps(_mm512_cvtepi32_ps(scaled_sums(u, x)), _mm512_set1_ps(u.d * x.d), acc);
    return _mm512_fnmadd_ps(_mm512_cvtepi32_ps(offset_sums(u, x)), _mm512_set1_ps(u.d_offset * x.d), acc);
  }
};

// Q6_K: 128 bytes of low 4 bits, 64 bytes of high 2 bits, 16 int8 scales (one per 16 values), d.
// Half h (128 values) takes ql[64h..], qh[32h..]: value l < 32 is ql[l] & 15 with bits 0-1 of qh[l],
// l + 32 is ql[l + 32] & 15 with bits 2-3, l + 64 is ql[l] >> 4 with bits 4-5, l + 96 is
// ql[l + 32] >> 4 with bits 6-7. A value is d * scale * (q - 32).
struct Q6K {
  static constexpr int64_t kBytes = 210;
  static constexpr ScaleIndex<16> kScales{};

  NANOSERVE_VNNI static void unpack(const uint8_t* b, Unpacked& u) {
    u.d = f16_at(b + 208);
    const __m256i scales = _mm256_cvtepi8_epi16(_mm_loadu_si128(reinterpret_cast<const __m128i*>(b + 192)));
    const __m512i table = _mm512_castsi256_si512(scales);
    for (int j = 0; j < 4; ++j) {
      u.scales[j] = _mm512_permutexvar_epi16(_mm512_load_si512(kScales.lanes[j]), table);
    }
    u.offsets = scales;  // times 32, subtracted in dot
    const __m512i nibble = _mm512_set1_epi8(0x0F), two_bits = _mm512_set1_epi8(0x03);
    for (int h = 0; h < 2; ++h) {
      const __m512i low = _mm512_loadu_si512(b + 64 * h);
      const __m256i high = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(b + 128 + 32 * h));
      const __m512i bits_0_3 = _mm512_inserti64x4(_mm512_castsi256_si512(high), _mm256_srli_epi16(high, 2), 1);
      const __m512i bits_4_7 = _mm512_srli_epi16(bits_0_3, 4);
      const __m512i top_first = _mm512_slli_epi16(_mm512_and_si512(bits_0_3, two_bits), 4);
      const __m512i top_second = _mm512_slli_epi16(_mm512_and_si512(bits_4_7, two_bits), 4);
      u.q[2 * h] = _mm512_or_si512(_mm512_and_si512(low, nibble), top_first);
      u.q[2 * h + 1] = _mm512_or_si512(_mm512_and_si512(_mm512_srli_epi16(low, 4), nibble), top_second);
    }
  }

  NANOSERVE_VNNI static __m512 dot(const Unpacked& u, const Q8KBlock& x, __m512 acc) {
    const __m512i sums = _mm512_sub_epi32(scaled_sums(u, x), _mm512_slli_epi32(offset_sums(u, x), 5));
    return _mm512_fmadd_ps(_mm512_cvtepi32_ps(sums), _mm512_set1_ps(u.d * x.d), acc);
  }
};

template <class Kind>
struct KTile {
  template <int R, int C>
  NANOSERVE_VNNI static void run(const uint8_t* const* w, const Q8KBlock* const* x, int64_t blocks, int64_t /*k*/,
                                 float* out, int64_t n) {
    __m512 acc[R][C];
    zero_sums(acc);
    for (int64_t b = 0; b < blocks; ++b) {
      for (int r = 0; r < R; ++r) {
        const uint8_t* block = w[r] + b * Kind::kBytes;
        if constexpr (C == 1) prefetch_ahead<Kind::kBytes>(block);  // decode only: see bf16_dot.cpp
        Unpacked u;
        Kind::unpack(block, u);
        for (int c = 0; c < C; ++c) acc[r][c] = Kind::dot(u, x[c][b], acc[r][c]);
      }
    }
    store_sums(acc, out, n);
  }
};

NANOSERVE_VNNI void quantize_blocks(const float* x, int64_t k, Q8KBlock* out) {
  for (int64_t b = 0; b < k / 256; ++b, x += 256) {
    Q8KBlock& block = out[b];
    __m512 amax = _mm512_setzero_ps();
    for (int i = 0; i < 256; i += 16) amax = _mm512_max_ps(amax, _mm512_abs_ps(_mm512_loadu_ps(x + i)));
    const float max = _mm512_reduce_max_ps(amax);
    block.d = max / 127.0f;
    const __m512 by = _mm512_set1_ps(block.d != 0 ? 127.0f / max : 0.0f);
    for (int i = 0; i < 256; i += 16) {
      const __m512 scaled = _mm512_roundscale_ps(_mm512_mul_ps(_mm512_loadu_ps(x + i), by), _MM_FROUND_TO_NEAREST_INT);
      const __m512i q = _mm512_cvtps_epi32(scaled);
      _mm_store_si128(reinterpret_cast<__m128i*>(block.q + i), _mm512_cvtsepi32_epi8(q));
      block.sums[i / 16] = static_cast<int16_t>(_mm512_reduce_add_epi32(q));
    }
  }
}

}  // namespace

void quantize_q8_k(const float* x, int64_t k, Q8KBlock* out) { quantize_blocks(x, k, out); }

const RowsKernel q4_k_rows = &each_column_group<KTile<Q4K>, Q8KBlock>;

const RowsKernel q6_k_rows = &each_column_group<KTile<Q6K>, Q8KBlock>;

}  // namespace nanoserve::cpu::tiles
