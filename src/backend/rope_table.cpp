#include "backend/rope_table.h"

#include <cmath>

#include "util/error.h"

namespace nanoserve {

void RopeTable::append(const RopeFrequencies& freqs, const int64_t* positions, int64_t count) {
  if (rotary_dim != 0 && rotary_dim != freqs.rotary_dim) {
    fail("RoPE tables of rotary dims {} and {} in one step", rotary_dim, freqs.rotary_dim);
  }
  rotary_dim = freqs.rotary_dim;
  for (int64_t t = 0; t < count; ++t) {
    for (float f : freqs.inv_freq) {
      // The angle is a float32 product, as in HF; only cos/sin are taken in double.
      const double angle = static_cast<double>(static_cast<float>(positions[t]) * f);
      cos.push_back(static_cast<float>(std::cos(angle)) * freqs.attention_scaling);
      sin.push_back(static_cast<float>(std::sin(angle)) * freqs.attention_scaling);
    }
  }
}

void apply_rope(float* x, int64_t tokens, int64_t n_heads, int64_t head_dim, const float* cos, const float* sin,
                int64_t rotary_dim, RopePairs pairs) {
  const int64_t half = rotary_dim / 2;
  // Pair i is (first + i * step, second + i * step) within a head.
  const int64_t step = pairs == RopePairs::Halves ? 1 : 2, second = pairs == RopePairs::Halves ? half : 1;
  for (int64_t t = 0; t < tokens; ++t) {
    const float* c = cos + t * half;
    const float* s = sin + t * half;
    for (int64_t h = 0; h < n_heads; ++h) {
      float* v = x + (t * n_heads + h) * head_dim;
      for (int64_t i = 0; i < half; ++i) {
        float& a = v[i * step];
        float& b = v[i * step + second];
        const float a0 = a, b0 = b;
        a = a0 * c[i] - b0 * s[i];
        b = b0 * c[i] + a0 * s[i];
      }
    }
  }
}

}  // namespace nanoserve
