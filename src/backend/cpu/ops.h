// CPU kernels of the forward pass, in float32 math. Activations are row-major [rows, cols] float
// arrays; weights are TensorViews of F32, F16 or BF16 read in place and widened in registers.
#pragma once

#include <cstdint>
#include <span>

#include "formats/tensor_view.h"

namespace nanoserve::cpu {

// out[t] = table[tokens[t]]: [tokens, hidden] from table [vocab, hidden].
void embed(const TensorView& table, std::span<const int32_t> tokens, float* out);

// out = x / sqrt(mean(x^2) + eps) * weight, row by row; x and out are [rows, cols].
void rms_norm(const float* x, const TensorView& weight, int64_t rows, int64_t cols, double eps, float* out);

// out[rows, w.shape[0]] = x[rows, w.shape[1]] * w^T. Each output depends only on its own row of x
// and of w, computed in a fixed order: results do not change with how many rows are batched.
void matmul(const float* x, int64_t rows, const TensorView& w, float* out);

// gate = silu(gate) * up, elementwise over n values.
void silu_mul(float* gate, const float* up, int64_t n);

// x += y over n values.
void add(float* x, const float* y, int64_t n);

// Causal attention for `tokens` queries at positions first_pos.. over keys/values at 0..first_pos+tokens-1.
// q, out: [tokens, heads * head_dim]; k, v: [positions, kv_heads * head_dim]. Query head h reads
// kv head h / (heads / kv_heads).
struct AttentionShape {
  int64_t heads, kv_heads, head_dim;
};
void attention(const float* q, int64_t tokens, int64_t first_pos, const float* k, const float* v,
               const AttentionShape& shape, float* out);

// Widens one row of a weight tensor to float: row r of a [rows, cols] tensor.
void load_row(const TensorView& w, int64_t row, float* out);

}  // namespace nanoserve::cpu
