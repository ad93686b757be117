#include "formats/quant.h"

#include <algorithm>
#include <cmath>
#include <cstring>

#include "formats/dtype.h"
#include "util/error.h"

namespace nanoserve {

namespace {

// The block decoders are inlined into dequantize_row, whose clones (AVX-512, AVX2, baseline) let
// the compiler vectorize their inner loops. Each computes a value exactly as the reference does,
// in the same order of float operations.
#define NANOSERVE_INLINE [[gnu::always_inline]] inline

// Q4_0: d, then 32 4-bit values: the low nibbles are values 0-15, the high nibbles 16-31; q - 8.
NANOSERVE_INLINE void q4_0(const uint8_t* b, float* y) {
  const float d = f16_at(b);
  const uint8_t* qs = b + 2;
  for (int j = 0; j < 16; ++j) y[j] = static_cast<float>((qs[j] & 0x0F) - 8) * d;
  for (int j = 0; j < 16; ++j) y[j + 16] = static_cast<float>((qs[j] >> 4) - 8) * d;
}

// Q4_1: d and a minimum m; q * d + m.
NANOSERVE_INLINE void q4_1(const uint8_t* b, float* y) {
  const float d = f16_at(b), m = f16_at(b + 2);
  const uint8_t* qs = b + 4;
  for (int j = 0; j < 16; ++j) y[j] = static_cast<float>(qs[j] & 0x0F) * d + m;
  for (int j = 0; j < 16; ++j) y[j + 16] = static_cast<float>(qs[j] >> 4) * d + m;
}

// Q5_0 / Q5_1: a fifth bit per value from the 32-bit qh (bit j for value j).
template <bool kWithMin>
NANOSERVE_INLINE void q5(const uint8_t* b, float* y) {
  const float d = f16_at(b), m = kWithMin ? f16_at(b + 2) : 0.0f;
  const uint8_t* p = b + (kWithMin ? 4 : 2);
  uint32_t qh;
  std::memcpy(&qh, p, 4);
  const uint8_t* qs = p + 4;
  for (int j = 0; j < 16; ++j) {
    const int low = (qs[j] & 0x0F) | static_cast<int>(((qh >> j) << 4) & 0x10);
    const int high = (qs[j] >> 4) | static_cast<int>((qh >> (j + 12)) & 0x10);
    if constexpr (kWithMin) {
      y[j] = static_cast<float>(low) * d + m;
      y[j + 16] = static_cast<float>(high) * d + m;
    } else {
      y[j] = static_cast<float>(low - 16) * d;
      y[j + 16] = static_cast<float>(high - 16) * d;
    }
  }
}

NANOSERVE_INLINE void q8_0(const uint8_t* b, float* y) {
  const float d = f16_at(b);
  const auto* qs = reinterpret_cast<const int8_t*>(b + 2);
  for (int j = 0; j < 32; ++j) y[j] = static_cast<float>(qs[j]) * d;
}

// The 6-bit scale and min of sub-block j of a Q4_K/Q5_K block, packed into 12 bytes.
NANOSERVE_INLINE void scale_min(int j, const uint8_t* scales, uint8_t& scale, uint8_t& min) {
  if (j < 4) {
    scale = scales[j] & 63;
    min = scales[j + 4] & 63;
  } else {
    scale = static_cast<uint8_t>((scales[j + 4] & 0x0F) | ((scales[j - 4] >> 6) << 4));
    min = static_cast<uint8_t>((scales[j + 4] >> 4) | ((scales[j] >> 6) << 4));
  }
}

// Q4_K and Q5_K: 256 values in 8 sub-blocks of 32, each d * scale * q - dmin * min.
template <bool kFiveBit>
NANOSERVE_INLINE void q45_k(const uint8_t* b, float* y) {
  const float d = f16_at(b), dmin = f16_at(b + 2);
  const uint8_t* scales = b + 4;
  const uint8_t* qh = b + 16;  // Q5_K: the fifth bits
  const uint8_t* qs = b + (kFiveBit ? 48 : 16);
  for (int chunk = 0; chunk < 4; ++chunk) {  // 64 values: low nibbles, then high nibbles
    for (int half = 0; half < 2; ++half) {
      uint8_t scale, min;
      scale_min(2 * chunk + half, scales, scale, min);
      const float dl = d * static_cast<float>(scale), ml = dmin * static_cast<float>(min);
      const int bit = 2 * chunk + half, shift = 4 * half;
      for (int l = 0; l < 32; ++l) {
        int q = (qs[l] >> shift) & 0x0F;
        if constexpr (kFiveBit) q += ((qh[l] >> bit) & 1) << 4;
        y[l] = dl * static_cast<float>(q) - ml;
      }
      y += 32;
    }
    qs += 32;
  }
}

// Q6_K: 256 values, 4 low bits in ql, 2 high bits in qh, 16 int8 scales; (q - 32) * d * scale.
NANOSERVE_INLINE void q6_k(const uint8_t* b, float* y) {
  const uint8_t* ql = b;
  const uint8_t* qh = b + 128;
  const auto* sc = reinterpret_cast<const int8_t*>(b + 192);
  const float d = f16_at(b + 208);
  for (int n = 0; n < 2; ++n) {       // two halves of 128
    for (int is = 0; is < 2; ++is) {  // 16 values share each scale
      const float s1 = d * static_cast<float>(sc[is]), s2 = d * static_cast<float>(sc[is + 2]);
      const float s3 = d * static_cast<float>(sc[is + 4]), s4 = d * static_cast<float>(sc[is + 6]);
      for (int l = 16 * is; l < 16 * is + 16; ++l) {
        const int q1 = ((ql[l] & 0x0F) | (((qh[l] >> 0) & 3) << 4)) - 32;
        const int q2 = ((ql[l + 32] & 0x0F) | (((qh[l] >> 2) & 3) << 4)) - 32;
        const int q3 = ((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4)) - 32;
        const int q4 = ((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) - 32;
        y[l] = s1 * static_cast<float>(q1);
        y[l + 32] = s2 * static_cast<float>(q2);
        y[l + 64] = s3 * static_cast<float>(q3);
        y[l + 96] = s4 * static_cast<float>(q4);
      }
    }
    y += 128;
    ql += 64;
    qh += 32;
    sc += 8;
  }
}

// Every block of a row with one decoder.
template <typename Decode>
NANOSERVE_INLINE void each_block(const uint8_t* src, float* dst, int64_t blocks, int64_t block_bytes,
                                 int64_t block_elems, Decode decode) {
  for (int64_t i = 0; i < blocks; ++i) decode(src + i * block_bytes, dst + i * block_elems);
}

}  // namespace

__attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default"))) void dequantize_row(GgmlType type,
                                                                                                  const uint8_t* src,
                                                                                                  float* dst,
                                                                                                  int64_t n) {
  const GgmlTypeInfo* info = ggml_type_info(static_cast<uint32_t>(type));
  if (!info || !info->dequantizable) fail("tensor type {} cannot be read yet", info ? info->name : "unknown");
  const int64_t blocks = n / info->block_elems, bytes = info->block_bytes, elems = info->block_elems;
  switch (type) {
    case GgmlType::F32: std::memcpy(dst, src, static_cast<size_t>(n) * 4); break;
    case GgmlType::F16:
      each_block(src, dst, blocks, bytes, elems, [](const uint8_t* b, float* y) { *y = f16_at(b); });
      break;
    case GgmlType::BF16:
      each_block(src, dst, blocks, bytes, elems, [](const uint8_t* b, float* y) {
        uint16_t bits;
        std::memcpy(&bits, b, 2);
        *y = bf16_to_float(bits);
      });
      break;
    case GgmlType::Q4_0: each_block(src, dst, blocks, bytes, elems, q4_0); break;
    case GgmlType::Q4_1: each_block(src, dst, blocks, bytes, elems, q4_1); break;
    case GgmlType::Q5_0: each_block(src, dst, blocks, bytes, elems, q5<false>); break;
    case GgmlType::Q5_1: each_block(src, dst, blocks, bytes, elems, q5<true>); break;
    case GgmlType::Q8_0: each_block(src, dst, blocks, bytes, elems, q8_0); break;
    case GgmlType::Q4_K: each_block(src, dst, blocks, bytes, elems, q45_k<false>); break;
    case GgmlType::Q5_K: each_block(src, dst, blocks, bytes, elems, q45_k<true>); break;
    case GgmlType::Q6_K: each_block(src, dst, blocks, bytes, elems, q6_k); break;
    default: fail("tensor type {} cannot be read yet", info->name);
  }
}

void quantize_row_q8_0(const float* src, uint8_t* dst, int64_t n) {
  for (int64_t b = 0; b < n / 32; ++b, src += 32, dst += 34) {
    float amax = 0;
    for (int j = 0; j < 32; ++j) amax = std::max(amax, std::abs(src[j]));
    const float d = amax / 127.0f, inverse = d != 0 ? 1.0f / d : 0.0f;
    const uint16_t half = float_to_f16(d);
    std::memcpy(dst, &half, 2);
    for (int j = 0; j < 32; ++j) dst[2 + j] = static_cast<uint8_t>(static_cast<int8_t>(std::round(src[j] * inverse)));
  }
}

namespace {

int nearest(float v, int low, int high) { return std::clamp(static_cast<int>(std::lround(v)), low, high); }

void store_f16(float v, uint8_t* dst) {
  const uint16_t half = float_to_f16(v);
  std::memcpy(dst, &half, 2);
}

}  // namespace

// Q4_K: each sub-block of 32 spans [lo, hi] (lo <= 0) in 15 steps: scale (hi - lo) / 15 and min
// -lo, both 6-bit multiples of the block's d and dmin (scale_min's packing, inverted).
void quantize_row_q4_k(const float* src, uint8_t* dst, int64_t n) {
  for (int64_t b = 0; b < n / 256; ++b, src += 256, dst += 144) {
    float scales[8], mins[8], max_scale = 0, max_min = 0;
    for (int j = 0; j < 8; ++j) {
      const float* x = src + 32 * j;
      const float lo = std::min(0.0f, *std::min_element(x, x + 32)), hi = *std::max_element(x, x + 32);
      scales[j] = (hi - lo) / 15.0f;
      mins[j] = -lo;
      max_scale = std::max(max_scale, scales[j]);
      max_min = std::max(max_min, mins[j]);
    }
    store_f16(max_scale / 63.0f, dst);
    store_f16(max_min / 63.0f, dst + 2);
    const float d = f16_at(dst), dmin = f16_at(dst + 2);
    uint8_t* packed = dst + 4;
    std::memset(packed, 0, 12);
    uint8_t q6_scale[8], q6_min[8];
    for (int j = 0; j < 8; ++j) {
      q6_scale[j] = static_cast<uint8_t>(d > 0 ? nearest(scales[j] / d, 0, 63) : 0);
      q6_min[j] = static_cast<uint8_t>(dmin > 0 ? nearest(mins[j] / dmin, 0, 63) : 0);
      if (j < 4) {
        packed[j] |= q6_scale[j];
        packed[j + 4] |= q6_min[j];
      } else {
        packed[j + 4] = static_cast<uint8_t>((q6_scale[j] & 0x0F) | ((q6_min[j] & 0x0F) << 4));
        packed[j - 4] |= static_cast<uint8_t>((q6_scale[j] >> 4) << 6);
        packed[j] |= static_cast<uint8_t>((q6_min[j] >> 4) << 6);
      }
    }
    uint8_t* qs = dst + 16;
    for (int j = 0; j < 8; ++j) {
      const float step = d * static_cast<float>(q6_scale[j]), offset = dmin * static_cast<float>(q6_min[j]);
      for (int l = 0; l < 32; ++l) {
        const auto q = static_cast<uint8_t>(step > 0 ? nearest((src[32 * j + l] + offset) / step, 0, 15) : 0);
        uint8_t& byte = qs[32 * (j / 2) + l];
        byte = j % 2 == 0 ? q : static_cast<uint8_t>(byte | (q << 4));
      }
    }
  }
}

// Q6_K: each group of 16 values has an 8-bit multiple of d as its scale, max|x| / 31 rounded; the
// values are q - 32 in [-32, 31] steps of it. Group g's scale is byte g, and its 6-bit values are
// split as q6_k reads them.
void quantize_row_q6_k(const float* src, uint8_t* dst, int64_t n) {
  for (int64_t b = 0; b < n / 256; ++b, src += 256, dst += 210) {
    float group_scale[16], max_scale = 0;
    for (int g = 0; g < 16; ++g) {
      float amax = 0;
      for (int l = 0; l < 16; ++l) amax = std::max(amax, std::abs(src[16 * g + l]));
      group_scale[g] = amax / 31.0f;
      max_scale = std::max(max_scale, group_scale[g]);
    }
    store_f16(max_scale / 127.0f, dst + 208);
    const float d = f16_at(dst + 208);
    uint8_t* ql = dst;
    uint8_t* qh = dst + 128;
    std::memset(dst, 0, 192);
    for (int g = 0; g < 16; ++g) {
      const auto scale = static_cast<uint8_t>(d > 0 ? nearest(group_scale[g] / d, 0, 127) : 0);
      dst[192 + g] = scale;
      const float step = d * static_cast<float>(scale);
      for (int l = 0; l < 16; ++l) {
        const int v = 16 * g + l, half = v / 128, quarter = v % 128 / 32, at = v % 32;
        const auto q = static_cast<uint8_t>(step > 0 ? nearest(src[v] / step, -32, 31) + 32 : 32);
        ql[64 * half + 32 * (quarter & 1) + at] |= static_cast<uint8_t>((q & 0x0F) << (4 * (quarter >> 1)));
        qh[32 * half + at] |= static_cast<uint8_t>((q >> 4) << (2 * quarter));
      }
    }
  }
}

}  // namespace nanoserve
