// Rotary position embeddings: the per-pair inverse frequencies for each scaling kind, and the
// cos/sin tables the attention applies. Frequencies are computed in float32 exactly as Hugging Face
// computes them, so positions far into the context rotate by the same angles.
#pragma once

#include <vector>

#include "model/config.h"

namespace nanoserve {

// [head_dim / 2] inverse frequencies after scaling.
std::vector<float> rope_inv_freq(const RopeConfig& rope, int64_t head_dim);

// Rotates x [tokens, n_heads * head_dim] in place, token t at positions[t]. Pairs are (i, i + head_dim/2)
// (the "rotate half" layout of HF checkpoints).
void apply_rope(float* x, int64_t tokens, int64_t n_heads, int64_t head_dim, const int64_t* positions,
                const std::vector<float>& inv_freq);

}  // namespace nanoserve
