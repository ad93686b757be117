// Dequantization of ggml's block formats to float, value for value as the reference (gguf-py)
// computes it: each block's scales are widened to float first, then scale * quant (- min).
#pragma once

#include <cstdint>

#include "formats/ggml_type.h"

namespace nanoserve {

// n values (a multiple of the type's block) from src to dst. Throws Error for a type nanoserve
// does not read (ggml_type_info(...)->dequantizable is false).
void dequantize_row(GgmlType type, const uint8_t* src, float* dst, int64_t n);

}  // namespace nanoserve
