#include "model/rope.h"

#include <cmath>

namespace nanoserve {

namespace {

// llama3: wavelengths longer than original/low_freq_factor are scaled by 1/factor, shorter than
// original/high_freq_factor kept, and the band between interpolated smoothly.
float llama3_scale(float inv_freq, const RopeConfig& rope) {
  const float factor = static_cast<float>(rope.factor);
  const float original = static_cast<float>(rope.original_max_positions);
  const float low = static_cast<float>(rope.low_freq_factor), high = static_cast<float>(rope.high_freq_factor);
  const float wavelen = static_cast<float>(2 * M_PI) / inv_freq;
  if (wavelen < original / high) return inv_freq;
  if (wavelen > original / low) return inv_freq / factor;
  const float smooth = (original / wavelen - low) / (high - low);
  return (1 - smooth) * inv_freq / factor + smooth * inv_freq;
}

}  // namespace

std::vector<float> rope_inv_freq(const RopeConfig& rope, int64_t head_dim) {
  std::vector<float> inv_freq(static_cast<size_t>(head_dim / 2));
  const float theta = static_cast<float>(rope.theta);
  for (size_t i = 0; i < inv_freq.size(); ++i) {
    float exponent = static_cast<float>(2 * i) / static_cast<float>(head_dim);
    float f = 1.0f / std::pow(theta, exponent);
    switch (rope.scaling) {
      case RopeScaling::None:
        break;
      case RopeScaling::Linear:
        f /= static_cast<float>(rope.factor);
        break;
      case RopeScaling::Llama3:
        f = llama3_scale(f, rope);
        break;
    }
    inv_freq[i] = f;
  }
  return inv_freq;
}

void apply_rope(float* x, int64_t tokens, int64_t n_heads, int64_t head_dim, const int64_t* positions,
                const std::vector<float>& inv_freq) {
  const int64_t half = head_dim / 2;
  std::vector<float> cos(static_cast<size_t>(half)), sin(static_cast<size_t>(half));
  for (int64_t t = 0; t < tokens; ++t) {
    for (int64_t i = 0; i < half; ++i) {
      // The angle is a float32 product, as in HF; only cos/sin are taken in double.
      float angle = static_cast<float>(positions[t]) * inv_freq[static_cast<size_t>(i)];
      cos[static_cast<size_t>(i)] = static_cast<float>(std::cos(static_cast<double>(angle)));
      sin[static_cast<size_t>(i)] = static_cast<float>(std::sin(static_cast<double>(angle)));
    }
    for (int64_t h = 0; h < n_heads; ++h) {
      float* v = x + (t * n_heads + h) * head_dim;
      for (int64_t i = 0; i < half; ++i) {
        const float a = v[i], b = v[i + half], c = cos[static_cast<size_t>(i)], s = sin[static_cast<size_t>(i)];
        v[i] = a * c - b * s;
        v[i + half] = b * c + a * s;
      }
    }
  }
}

}  // namespace nanoserve
