// Element types of tensors on disk, and conversion of 16-bit floats to float. The block-quantized
// types (GGUF's) store a row as blocks of dtype_block_elems values in dtype_block_bytes bytes.
#pragma once

#include <cstdint>
#include <cstring>
#include <string>
#include <string_view>

#include "formats/ggml_type.h"

namespace nanoserve {

enum class DType { F32, F16, BF16, I64, Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q4_K, Q5_K, Q6_K };

size_t dtype_size(DType dtype);          // bytes per element of a plain type (one block's bytes otherwise)
int64_t dtype_block_elems(DType dtype);  // 1 for plain types
// Bytes of `elements` values; elements is a whole number of blocks.
int64_t dtype_bytes(DType dtype, int64_t elements);
bool is_quantized(DType dtype);
std::string_view dtype_name(DType dtype);             // "F32" as safetensors spells it; "Q8_0" as ggml does
bool parse_dtype(std::string_view name, DType* out);  // a safetensors dtype name; false for others
bool dtype_from_ggml(GgmlType type, DType* out);      // false for ggml types nanoserve does not read
GgmlType ggml_type_of(DType dtype);                   // the ggml type of a float or quantized dtype

inline float bf16_to_float(uint16_t bits) {
  uint32_t u = static_cast<uint32_t>(bits) << 16;
  float f;
  std::memcpy(&f, &u, sizeof f);
  return f;
}

// Round to nearest even; NaN stays NaN.
inline uint16_t float_to_bf16(float f) {
  uint32_t u;
  std::memcpy(&u, &f, sizeof u);
  if ((u & 0x7fffffff) > 0x7f800000) return static_cast<uint16_t>((u >> 16) | 0x40);
  return static_cast<uint16_t>((u + 0x7fff + ((u >> 16) & 1)) >> 16);
}

// IEEE half: 1 sign, 5 exponent, 10 mantissa bits; subnormals and inf/nan handled.
inline float f16_to_float(uint16_t bits) {
  uint32_t sign = static_cast<uint32_t>(bits & 0x8000) << 16;
  uint32_t exponent = (bits >> 10) & 0x1f, mantissa = bits & 0x3ff;
  uint32_t u;
  if (exponent == 0x1f) {
    u = sign | 0x7f800000 | (mantissa << 13);
  } else if (exponent != 0) {
    u = sign | ((exponent + 112) << 23) | (mantissa << 13);
  } else {
    float magnitude = static_cast<float>(mantissa) * 5.9604644775390625e-8f;  // 2^-24
    std::memcpy(&u, &magnitude, sizeof u);
    u |= sign;
  }
  float f;
  std::memcpy(&f, &u, sizeof f);
  return f;
}

// The IEEE half stored at p, at any alignment (the scales inside GGUF blocks).
inline float f16_at(const uint8_t* p) {
  uint16_t bits;
  std::memcpy(&bits, p, 2);
  return f16_to_float(bits);
}

// Round to nearest even, as F16C's vcvtps2ph (ggml's float-to-half on x86) does; overflow to inf.
inline uint16_t float_to_f16(float f) {
  uint32_t u;
  std::memcpy(&u, &f, sizeof u);
  const uint16_t sign = static_cast<uint16_t>((u >> 16) & 0x8000);
  const uint32_t abs = u & 0x7fffffff;
  if (abs >= 0x7f800000) return static_cast<uint16_t>(sign | 0x7c00 | (abs > 0x7f800000 ? 0x200 : 0));  // inf, nan
  if (abs >= 0x477ff000) return static_cast<uint16_t>(sign | 0x7c00);  // rounds past the largest half
  if (abs < 0x38800000) {  // a half subnormal: scale so the rounding happens at bit 0
    float magnitude;
    std::memcpy(&magnitude, &abs, sizeof magnitude);
    const float scaled = magnitude * 16777216.0f;  // 2^24: one half subnormal step per unit
    const auto q = static_cast<uint32_t>(__builtin_rintf(scaled));
    return static_cast<uint16_t>(sign | q);
  }
  const uint32_t rounded = abs + 0xfff + ((abs >> 13) & 1);  // to nearest, ties to even at bit 13
  return static_cast<uint16_t>(sign | ((rounded - 0x38000000) >> 13));
}

// FP8 E4M3 (the "fn" variant of CUDA's __nv_fp8_e4m3: 1 sign, 4 exponent bits biased by 7, 3
// mantissa bits; no infinities, 0x7f/0xff is NaN, 448 the largest value).
inline float fp8_e4m3_to_float(uint8_t bits) {
  const int exponent = (bits >> 3) & 0xf, mantissa = bits & 7;
  float magnitude;
  if (exponent == 0xf && mantissa == 7) {
    magnitude = __builtin_nanf("");
  } else if (exponent == 0) {
    magnitude = static_cast<float>(mantissa) * 0.001953125f;  // 2^-9, the subnormal step
  } else {
    magnitude = __builtin_ldexpf(static_cast<float>(8 + mantissa), exponent - 10);
  }
  return bits & 0x80 ? -magnitude : magnitude;
}

// Round to nearest even, saturating to +-448 as CUDA's __nv_fp8_e4m3(float) does; NaN stays NaN.
inline uint8_t float_to_fp8_e4m3(float f) {
  const uint8_t sign = __builtin_signbit(f) ? 0x80 : 0;
  const float magnitude = __builtin_fabsf(f);
  if (__builtin_isnan(f)) return sign | 0x7f;
  if (magnitude >= 448.0f) return sign | 0x7e;
  if (magnitude < 0.015625f) {  // below 2^-6: subnormal steps of 2^-9 (8 steps reach the smallest normal, 0x08)
    return static_cast<uint8_t>(sign | static_cast<uint8_t>(__builtin_rintf(magnitude * 512.0f)));
  }
  int exponent = 0;
  __builtin_frexpf(magnitude, &exponent);  // magnitude = m * 2^exponent, m in [0.5, 1)
  // The value in units of its exponent's mantissa step: [8, 16]; 16 carries into the next exponent.
  const auto steps = static_cast<int>(__builtin_rintf(__builtin_ldexpf(magnitude, 4 - exponent)));
  return static_cast<uint8_t>(sign | (((exponent + 6) << 3) + steps - 8));
}

}  // namespace nanoserve
