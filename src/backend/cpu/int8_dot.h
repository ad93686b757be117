// Matrix products on quantized weights with integer dot products (AVX-512 VNNI): each activation row
// is quantized to 8 bits per value, and a weight block and an activation block contribute
// d_w * d_x * sum(q_w * q_x), the sum taken exactly in int32. Faster than widening the weights to
// float, at the cost of 8-bit activations (within the bound tested per type), as llama.cpp computes.
//   Q8_0, Q4_0: activations as Q8_0 blocks of 32 (ggml's reference quantizer).
//   Q4_K, Q6_K: activations in blocks of 256 with a float scale and the sum of every 16 values,
//               which carry the K-quants' per-sub-block minimums and offsets.
#pragma once

#include <cstdint>

#include "formats/tensor_view.h"

namespace nanoserve::cpu {

// Whether weights of this dtype multiply through int8 dot products here: the kernel level is
// AVX-512, the CPU has VNNI, and the type has a kernel (NANOSERVE_CPU_KERNELS=avx2 or baseline
// keeps every type on the float path).
bool takes_int8_dot(DType dtype);

// out[rows, n] = x[rows, k] * w^T for w [n, k] of a dtype takes_int8_dot accepts. Each output is
// computed the same way whatever the other rows are, so it does not depend on the batch.
void multiply_int8(const float* x, int64_t rows, const TensorView& w, float* out);

}  // namespace nanoserve::cpu
