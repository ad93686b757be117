// Rotary position embeddings as the backends apply them: a step's table of cos and sin per token,
// and the rotation. How the frequencies come from a model's config (each scaling kind) is the
// model's business (model/rope.h).
#pragma once

#include <cstdint>
#include <vector>

namespace nanoserve {

struct RopeFrequencies {
  std::vector<float> inv_freq;     // [rotary_dim / 2]
  int64_t rotary_dim = 0;          // leading dims of each head that rotate; the rest pass through
  float attention_scaling = 1.0f;  // multiplies cos and sin (yarn, longrope)
};

// Which dims of a head rotate together at frequency i.
enum class RopePairs {
  Halves,       // (i, i + rotary_dim/2): the "rotate half" layout of HF checkpoints
  Interleaved,  // (2i, 2i + 1): llama.cpp's layout, whose converter permutes Llama q/k rows into it
};

// cos and sin of each token's angles, attention_scaling applied: what a rotation multiplies by.
// A forward step builds one table for all its tokens and every layer reads it.
struct RopeTable {
  int64_t rotary_dim = 0;
  std::vector<float> cos, sin;  // [tokens, rotary_dim / 2]

  int64_t tokens() const { return rotary_dim ? static_cast<int64_t>(cos.size()) / (rotary_dim / 2) : 0; }
  // Adds rows for `count` tokens at positions[0..count) rotating by freqs.
  void append(const RopeFrequencies& freqs, const int64_t* positions, int64_t count);
};

// Rotates x [tokens, n_heads * head_dim] in place over the rotary dims, token t by row t of cos and
// sin ([tokens, rotary_dim / 2]).
void apply_rope(float* x, int64_t tokens, int64_t n_heads, int64_t head_dim, const float* cos, const float* sin,
                int64_t rotary_dim, RopePairs pairs = RopePairs::Halves);

}  // namespace nanoserve
