#include "model/rope.h"

#include <algorithm>
#include <cmath>

#include "util/error.h"

namespace nanoserve {

namespace {

// theta^(2i/dim) in float32, as torch computes base ** (arange(0, dim, 2).float() / dim).
float base_power(float theta, size_t i, int64_t dim) {
  return std::pow(theta, static_cast<float>(2 * i) / static_cast<float>(dim));
}

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

double yarn_mscale(double scale, double mscale) { return scale <= 1 ? 1.0 : 0.1 * mscale * std::log(scale) + 1.0; }

// YaRN: dimensions rotating fewer than beta_slow times over the original context are interpolated
// (divided by factor), those rotating more than beta_fast times extrapolated (kept), with a linear
// ramp between.
void yarn(const RopeConfig& rope, int64_t dim, RopeFrequencies& out) {
  const double theta = rope.theta;
  auto correction_dim = [&](double rotations) {
    return dim * std::log(static_cast<double>(rope.original_max_positions) / (rotations * 2 * M_PI)) /
           (2 * std::log(theta));
  };
  double low = correction_dim(rope.beta_fast), high = correction_dim(rope.beta_slow);
  if (rope.truncate) {
    low = std::floor(low);
    high = std::ceil(high);
  }
  low = std::max(low, 0.0);
  high = std::min(high, static_cast<double>(dim - 1));
  if (low == high) high += 0.001;  // avoids a zero-width ramp
  for (size_t i = 0; i < out.inv_freq.size(); ++i) {
    const float pos_freq = base_power(static_cast<float>(theta), i, dim);
    const float extrapolation = 1.0f / pos_freq;
    const float interpolation = 1.0f / (static_cast<float>(rope.factor) * pos_freq);
    const float ramp =
        std::clamp((static_cast<float>(i) - static_cast<float>(low)) / static_cast<float>(high - low), 0.0f, 1.0f);
    const float extrapolation_weight = 1 - ramp;
    out.inv_freq[i] = interpolation * (1 - extrapolation_weight) + extrapolation * extrapolation_weight;
  }
  double attention = rope.attention_factor.value_or(0);
  if (!rope.attention_factor) {
    attention = rope.mscale > 0 && rope.mscale_all_dim > 0
                    ? yarn_mscale(rope.factor, rope.mscale) / yarn_mscale(rope.factor, rope.mscale_all_dim)
                    : yarn_mscale(rope.factor, 1);
  }
  out.attention_scaling = static_cast<float>(attention);
}

void longrope(const RopeConfig& rope, int64_t dim, int64_t seq_len, RopeFrequencies& out) {
  const auto& factors = seq_len > rope.original_max_positions ? rope.long_factor : rope.short_factor;
  if (factors.size() != out.inv_freq.size()) {
    fail("longrope: {} factors given for {} rotary frequencies", factors.size(), out.inv_freq.size());
  }
  for (size_t i = 0; i < out.inv_freq.size(); ++i) {
    out.inv_freq[i] = 1.0f / (static_cast<float>(factors[i]) * base_power(static_cast<float>(rope.theta), i, dim));
  }
  double attention = rope.attention_factor.value_or(0);
  if (!rope.attention_factor) {
    attention = rope.factor <= 1
                    ? 1.0
                    : std::sqrt(1 + std::log(rope.factor) / std::log(static_cast<double>(rope.original_max_positions)));
  }
  out.attention_scaling = static_cast<float>(attention);
}

}  // namespace

bool rope_depends_on_length(const RopeConfig& rope) {
  return rope.scaling == RopeScaling::Dynamic || rope.scaling == RopeScaling::LongRope;
}

RopeFrequencies rope_frequencies(const RopeConfig& rope, int64_t head_dim, int64_t max_positions, int64_t seq_len) {
  RopeFrequencies out;
  const int64_t dim = static_cast<int64_t>(static_cast<double>(head_dim) * rope.partial_rotary_factor);
  out.rotary_dim = dim;
  out.inv_freq.resize(static_cast<size_t>(dim / 2));
  float theta = static_cast<float>(rope.theta);
  if (rope.scaling == RopeScaling::Factors && rope.freq_factors.size() != out.inv_freq.size()) {
    fail("rope: {} frequency factors given for {} rotary frequencies", rope.freq_factors.size(), out.inv_freq.size());
  }
  switch (rope.scaling) {
    case RopeScaling::Yarn: yarn(rope, dim, out); return out;
    case RopeScaling::LongRope: longrope(rope, dim, seq_len, out); return out;
    case RopeScaling::Dynamic: {
      // The base grows once the sequence passes max_position_embeddings (computed in double, as in Python).
      const double len = static_cast<double>(std::max(seq_len, max_positions));
      const double d = static_cast<double>(dim);
      theta = static_cast<float>(
          rope.theta *
          std::pow(rope.factor * len / static_cast<double>(max_positions) - (rope.factor - 1), d / (d - 2)));
      break;
    }
    default: break;
  }
  for (size_t i = 0; i < out.inv_freq.size(); ++i) {
    float f = 1.0f / base_power(theta, i, dim);
    if (rope.scaling == RopeScaling::Linear) f /= static_cast<float>(rope.factor);
    if (rope.scaling == RopeScaling::Llama3) f = llama3_scale(f, rope);
    if (rope.scaling == RopeScaling::Factors)
      f = 1.0f / (static_cast<float>(rope.freq_factors[i]) * base_power(theta, i, dim));
    out.inv_freq[i] = f;
  }
  return out;
}

}  // namespace nanoserve
