// Matrix products whose activations are rounded to the precision the weights are stored in, so
// that the CPU's dot-product instructions take both operands as they are, as llama.cpp computes:
//   BF16:       activations rounded to bf16, vdpbf16ps (AVX512_BF16): 32 products a step.
//   Q8_0, Q4_0: integer dot products (AVX-512 VNNI) on activations as Q8_0 blocks of 32 (ggml's
//               reference quantizer); a weight block and an activation block contribute
//               d_w * d_x * sum(q_w * q_x), the sum exact in int32.
//   Q4_K, Q6_K: the same on activations in blocks of 256 with a float scale and the sum of every 16
//               values, which carry the K-quants' per-sub-block minimums and offsets.
// Each is within the bound its activations' rounding allows (tested per type). The float32
// reference path, on which every product multiplies float32 activations, stays for verification:
// NANOSERVE_CPU_F32=1 (kernel_level.h).
#pragma once

#include <cstdint>

#include "formats/tensor_view.h"

namespace nanoserve::cpu {

// Whether weights of this dtype multiply with reduced-precision activations here: the kernel level
// is AVX-512, the CPU has the instructions (AVX512_BF16 for BF16, VNNI for the others), and the
// float32 reference path is not asked for (NANOSERVE_CPU_KERNELS=avx2 or baseline, or
// NANOSERVE_CPU_F32=1, keeps every type on the float path).
bool takes_reduced_dot(DType dtype);

// out[rows, n] = x[rows, k] * w^T for w [n, k] of a dtype takes_reduced_dot accepts. Each output is
// computed the same way whatever the other rows are, so it does not depend on the batch.
void multiply_reduced(const float* x, int64_t rows, const TensorView& w, float* out);

}  // namespace nanoserve::cpu
