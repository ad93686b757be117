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

size_t dtype_size(DType dtype);  // bytes per element of a plain type (one block's bytes otherwise)
int64_t dtype_block_elems(DType dtype);  // 1 for plain types
// Bytes of `elements` values; elements is a whole number of blocks.
int64_t dtype_bytes(DType dtype, int64_t elements);
bool is_quantized(DType dtype);
std::string_view dtype_name(DType dtype);         // "F32" as safetensors spells it; "Q8_0" as ggml does
bool parse_dtype(std::string_view name, DType* out);  // a safetensors dtype name; false for others
bool dtype_from_ggml(GgmlType type, DType* out);      // false for ggml types nanoserve does not read
GgmlType ggml_type_of(DType dtype);                   // the ggml type of a float or quantized dtype

inline float bf16_to_float(uint16_t bits) {
  uint32_t u = static_cast<uint32_t>(bits) << 16;
  float f;
  std::memcpy(&f, &u, sizeof f);
  return f;
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

}  // namespace nanoserve
