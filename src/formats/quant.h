// Dequantization of ggml's block formats to float, value for value as the reference (gguf-py)
// computes it: each block's scales are widened to float first, then scale * quant (- min).
#pragma once

#include <cstdint>

#include "formats/ggml_type.h"

namespace nanoserve {

// n values (a multiple of the type's block) from src to dst. Throws Error for a type nanoserve
// does not read (ggml_type_info(...)->dequantizable is false).
void dequantize_row(GgmlType type, const uint8_t* src, float* dst, int64_t n);

// n values (a multiple of 32) to Q8_0 blocks, as ggml's reference quantizer does: per block of 32,
// d = max|x| / 127 stored as float16, q = round(x / d).
void quantize_row_q8_0(const float* src, uint8_t* dst, int64_t n);

// n values (a multiple of 256) to Q4_K or Q6_K blocks, with a plain rounding quantizer: each
// sub-block's scale (and Q4_K's minimum) spans its values, with no search for a better fit as
// llama-quantize does. Values come back within about half a step of each sub-block's grid; for
// benchmark models (tools/make_random_model) and tests.
void quantize_row_q4_k(const float* src, uint8_t* dst, int64_t n);
void quantize_row_q6_k(const float* src, uint8_t* dst, int64_t n);

}  // namespace nanoserve
