// CPU kernels of the forward pass, in float32 math. Activations are row-major [rows, cols] float
// arrays; weights are TensorViews of F32, F16, BF16 or a GGUF block type, read in place and
// widened (dequantized) a few rows at a time.
// Every kernel computes an output row the same way whatever else is in the batch.
#pragma once

#include <cstdint>
#include <span>

#include "backend/ops.h"
#include "backend/rope_table.h"
#include "formats/tensor_view.h"

namespace nanoserve::cpu {

// out[t] = table[tokens[t]]: [tokens, hidden] from table [vocab, hidden].
void embed(const TensorView& table, std::span<const int32_t> tokens, float* out);

// Normalizes each row of x [rows, cols] into out (which may alias x).
void norm(NormKind kind, const float* x, const Norm& params, int64_t rows, int64_t cols, double eps, float* out);

// out[rows, out_features] = x[rows, in_features] * W^T + bias.
void linear(const float* x, int64_t rows, const Linear& layer, float* out);
// out[r] += bias for each of the rows of out [rows, bias features]; nothing for an absent bias.
void add_bias(const TensorView& bias, int64_t rows, float* out);

// gate = act(gate) * up, elementwise over n values.
void act_mul(Activation act, float* gate, const float* up, int64_t n);
// x = act(x).
void activate(Activation act, float* x, int64_t n);

// x += y over n values.
void add(float* x, const float* y, int64_t n);
// x = x * scale.
void scale(float* x, float scale, int64_t n);
// x = cap * tanh(x / cap).
void softcap(float* x, float cap, int64_t n);
// x = clamp(x, -limit, limit).
void clamp(float* x, float limit, int64_t n);

// The index of the largest of row[0, cols) whose bit is set in `allowed` (bit c % 64 of word
// c / 64), the lowest among equals; -1 when no bit is set.
int32_t argmax_allowed(const float* row, int64_t cols, const uint64_t* allowed);

// apply_rope (backend/rope_table.h) on x [tokens, heads * head_dim] by a step's table, shared between threads.
void rope(float* x, const RopeTable& table, int64_t heads, int64_t head_dim, RopePairs pairs);

// Causal attention for `tokens` queries at positions first_pos.. over keys/values at 0..first_pos+tokens-1.
// q, out: [tokens, heads * head_dim]; k_rows[p], v_rows[p]: the [kv_heads * head_dim] row of position p
// (rows live in cache blocks, so each position has its own pointer). Query head h reads kv head
// h / (heads / kv_heads).
void attention(const float* q, int64_t tokens, int64_t first_pos, const float* const* k_rows,
               const float* const* v_rows, const AttentionParams& params, float* out);

// Widens one row of a weight tensor to float: row r of a [rows, cols] tensor.
void load_row(const TensorView& w, int64_t row, float* out);

}  // namespace nanoserve::cpu
