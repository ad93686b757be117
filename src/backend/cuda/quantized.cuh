// GGUF's quantized blocks, decoded on the GPU eight values at a time: group g of a row is its values
// [8g, 8g + 8), whichever block holds them. The layouts are GGUF's (formats/quant.cpp decodes the
// same on the CPU, in the same float arithmetic). Rows hold whole blocks.
#pragma once

#include "backend/cuda/common.cuh"

namespace nanoserve::cuda {

__device__ inline float half_at(const uint8_t* p) { return __half2float(*reinterpret_cast<const __half*>(p)); }

// Bytes [0, 8) at p, which is 2-byte aligned (blocks of 34, 18 and 210 bytes keep no more).
__device__ inline void load8(const uint8_t* p, uint8_t (&b)[8]) {
  const auto* h = reinterpret_cast<const uint16_t*>(p);
#pragma unroll
  for (int i = 0; i < 4; ++i) {
    const uint16_t v = h[i];
    b[2 * i] = static_cast<uint8_t>(v & 0xFF);
    b[2 * i + 1] = static_cast<uint8_t>(v >> 8);
  }
}

// The 6-bit scale and min of sub-block j of a Q4_K/Q5_K block, packed into 12 bytes.
__device__ inline void scale_min_k(int j, const uint8_t* s, float& scale, float& min) {
  if (j < 4) {
    scale = static_cast<float>(s[j] & 63);
    min = static_cast<float>(s[j + 4] & 63);
  } else {
    scale = static_cast<float>((s[j + 4] & 0x0F) | ((s[j - 4] >> 6) << 4));
    min = static_cast<float>((s[j + 4] >> 4) | ((s[j] >> 6) << 4));
  }
}

// Group g's eight quants as integers q, and the map back to values: value = scale * q - offset
// (offset 0 but for Q4_K and Q5_K, whose blocks have minimums).
struct GroupQuants {
  int q[8];
  float scale, offset;
};

template <WeightType Q>
__device__ inline GroupQuants group_quants(const uint8_t* row, int64_t g) {
  GroupQuants out;
  uint8_t q[8];
  if constexpr (Q == WeightType::Q8_0) {  // d, 32 int8
    const uint8_t* b = row + (g >> 2) * 34;
    load8(b + 2 + (g & 3) * 8, q);
    out = {{}, half_at(b), 0.0f};
#pragma unroll
    for (int i = 0; i < 8; ++i) out.q[i] = static_cast<int8_t>(q[i]);
  } else if constexpr (Q == WeightType::Q4_0) {  // d, 16 bytes: values 0-15 low nibbles, 16-31 high
    const uint8_t* b = row + (g >> 2) * 18;
    const int part = static_cast<int>(g & 3), shift = (part >> 1) * 4;
    load8(b + 2 + (part & 1) * 8, q);
    out = {{}, half_at(b), 0.0f};
#pragma unroll
    for (int i = 0; i < 8; ++i) out.q[i] = ((q[i] >> shift) & 0x0F) - 8;
  } else if constexpr (Q == WeightType::Q4_K || Q == WeightType::Q5_K) {
    // d, dmin, 12 bytes of scales, (Q5_K: 32 bytes of fifth bits), 128 bytes of nibbles: each 64
    // values are 32 bytes' low nibbles then their high nibbles.
    constexpr bool kFiveBit = Q == WeightType::Q5_K;
    const uint8_t* b = row + (g >> 5) * (kFiveBit ? 176 : 144);
    const int v = static_cast<int>(g & 31) * 8, sub = v >> 5, offset = v & 31, shift = (sub & 1) * 4;
    float scale, min;
    scale_min_k(sub, b + 4, scale, min);
    out.scale = half_at(b) * scale;
    out.offset = half_at(b + 2) * min;
    const auto* qs = reinterpret_cast<const uint2*>(b + (kFiveBit ? 48 : 16) + (sub >> 1) * 32 + offset);
    *reinterpret_cast<uint2*>(q) = *qs;  // 8-byte aligned: blocks of 144 and 176 bytes, offsets of 8
    uint8_t high[8] = {};
    if constexpr (kFiveBit) *reinterpret_cast<uint2*>(high) = *reinterpret_cast<const uint2*>(b + 16 + offset);
#pragma unroll
    for (int i = 0; i < 8; ++i) {
      out.q[i] = (q[i] >> shift) & 0x0F;
      if constexpr (kFiveBit) out.q[i] += ((high[i] >> sub) & 1) << 4;
    }
  } else {  // Q6_K: 128 bytes of low nibbles, 64 of high bit pairs, 16 int8 scales, d
    const uint8_t* b = row + (g >> 5) * 210;
    const int v = static_cast<int>(g & 31) * 8, half = v >> 7, quarter = (v & 127) >> 5, l = v & 31;
    uint8_t hi[8];
    load8(b + 64 * half + (quarter & 1) * 32 + l, q);
    load8(b + 128 + 32 * half + l, hi);
    out.scale = half_at(b + 208) * static_cast<float>(static_cast<int8_t>(b[192 + 8 * half + l / 16 + 2 * quarter]));
    out.offset = 0.0f;
    const int low_shift = (quarter >> 1) * 4, high_shift = 2 * quarter;
#pragma unroll
    for (int i = 0; i < 8; ++i) out.q[i] = (((q[i] >> low_shift) & 0x0F) | (((hi[i] >> high_shift) & 3) << 4)) - 32;
  }
  return out;
}

// Group g's values, in the CPU's float operations (unfused: scale * q, then - offset).
template <WeightType Q>
__device__ inline void decode_group(const uint8_t* row, int64_t g, float (&w)[8]) {
  const GroupQuants group = group_quants<Q>(row, g);
#pragma unroll
  for (int i = 0; i < 8; ++i) w[i] = __fsub_rn(__fmul_rn(group.scale, static_cast<float>(group.q[i])), group.offset);
}

// The quantized targets of matvec/gated_matvec (quantized.cu).
void quantized_matvec(const float* x, int64_t rows, const MatvecTarget* targets, int count, bool gated, ActType act,
                      cudaStream_t stream);
// embed() of a quantized table.
void quantized_embed(const Matrix& table, const int32_t* tokens, int64_t count, float* out, cudaStream_t stream);

}  // namespace nanoserve::cuda
