#include "model/rope.h"

#include <gtest/gtest.h>

#include <cmath>

namespace nanoserve {
namespace {

std::vector<float> inv_freq(const RopeConfig& rope, int64_t head_dim, int64_t seq_len = 1) {
  return rope_frequencies(rope, head_dim, /*max_positions=*/64, seq_len).inv_freq;
}

TEST(Rope, DefaultFrequencies) {
  RopeConfig rope;  // theta 10000
  auto f = inv_freq(rope, 8);
  ASSERT_EQ(f.size(), 4u);
  EXPECT_FLOAT_EQ(f[0], 1.0f);
  EXPECT_FLOAT_EQ(f[1], 0.1f);
  EXPECT_FLOAT_EQ(f[2], 0.01f);
  EXPECT_FLOAT_EQ(f[3], 0.001f);
}

TEST(Rope, LinearDividesEveryFrequency) {
  RopeConfig rope{.scaling = RopeScaling::Linear, .factor = 4.0};
  auto base = inv_freq(RopeConfig{}, 16), scaled = inv_freq(rope, 16);
  for (size_t i = 0; i < base.size(); ++i) EXPECT_FLOAT_EQ(scaled[i], base[i] / 4);
}

// llama3 keeps wavelengths below original/high_freq_factor, divides those above original/low_freq_factor
// by factor, and interpolates between.
TEST(Rope, Llama3Bands) {
  RopeConfig rope{.scaling = RopeScaling::Llama3,
                  .factor = 8.0,
                  .low_freq_factor = 1.0,
                  .high_freq_factor = 4.0,
                  .original_max_positions = 32};
  auto base = inv_freq(RopeConfig{}, 16), scaled = inv_freq(rope, 16);
  EXPECT_FLOAT_EQ(scaled[0], base[0]);                            // wavelength 6.3 < 8: kept
  const float wavelen1 = static_cast<float>(2 * M_PI) / base[1];  // 19.9: in the band
  const float smooth = (32 / wavelen1 - 1) / 3;
  EXPECT_FLOAT_EQ(scaled[1], (1 - smooth) * base[1] / 8 + smooth * base[1]);
  for (size_t i = 2; i < base.size(); ++i) EXPECT_FLOAT_EQ(scaled[i], base[i] / 8);  // > 32: scaled
}

// Rotates x [1, head_dim] of one head at position pos through a one-row table.
void rotate(float* x, int64_t head_dim, int64_t pos, const RopeFrequencies& freqs) {
  RopeTable table;
  table.append(freqs, &pos, 1);
  ASSERT_EQ(table.tokens(), 1);
  apply_rope(x, 1, 1, head_dim, table.cos.data(), table.sin.data(), table.rotary_dim);
}

TEST(Rope, RotatesPairsHalfApart) {
  // head_dim 4: pairs (0, 2) and (1, 3); at position p pair i turns by p * inv_freq[i].
  RopeFrequencies freqs{{1.0f, 0.5f}, 4, 1.0f};
  float x[4] = {1, 2, 3, 4};
  rotate(x, 4, 2, freqs);
  EXPECT_NEAR(x[0], 1 * std::cos(2.0) - 3 * std::sin(2.0), 1e-6);
  EXPECT_NEAR(x[2], 3 * std::cos(2.0) + 1 * std::sin(2.0), 1e-6);
  EXPECT_NEAR(x[1], 2 * std::cos(1.0) - 4 * std::sin(1.0), 1e-6);
  EXPECT_NEAR(x[3], 4 * std::cos(1.0) + 2 * std::sin(1.0), 1e-6);
}

// Partial rotary: only the first rotary_dim values of each head turn; cos/sin carry the attention scale.
TEST(Rope, PartialRotaryWithAttentionScaling) {
  RopeFrequencies freqs{{1.0f}, 2, 0.5f};
  float x[4] = {1, 2, 3, 4};
  rotate(x, 4, 1, freqs);
  EXPECT_NEAR(x[0], 0.5 * (1 * std::cos(1.0) - 2 * std::sin(1.0)), 1e-6);
  EXPECT_NEAR(x[1], 0.5 * (2 * std::cos(1.0) + 1 * std::sin(1.0)), 1e-6);
  EXPECT_EQ(x[2], 3);
  EXPECT_EQ(x[3], 4);
}

// Dynamic NTK changes nothing up to max_position_embeddings, then grows the base with the length.
TEST(Rope, DynamicGrowsBaseOnlyPastTheContext) {
  RopeConfig rope{.scaling = RopeScaling::Dynamic, .factor = 2.0};
  EXPECT_EQ(inv_freq(rope, 8, 64), inv_freq(RopeConfig{}, 8));
  auto grown = inv_freq(rope, 8, 128);
  const double base = 10000 * std::pow(2.0 * 128 / 64 - 1, 8.0 / 6.0);
  EXPECT_FLOAT_EQ(grown[1], static_cast<float>(1 / std::pow(base, 2.0 / 8)));
}

// LongRoPE switches from the short to the long factors once the sequence passes the original context.
TEST(Rope, LongRopePicksFactorsByLength) {
  RopeConfig rope{.scaling = RopeScaling::LongRope,
                  .factor = 4.0,
                  .original_max_positions = 32,
                  .short_factor = {1, 2},
                  .long_factor = {3, 5}};
  auto base = inv_freq(RopeConfig{}, 4);
  auto short_f = rope_frequencies(rope, 4, 128, 32), long_f = rope_frequencies(rope, 4, 128, 33);
  EXPECT_FLOAT_EQ(short_f.inv_freq[1], base[1] / 2);
  EXPECT_FLOAT_EQ(long_f.inv_freq[1], base[1] / 5);
  EXPECT_FLOAT_EQ(long_f.attention_scaling, static_cast<float>(std::sqrt(1 + std::log(4.0) / std::log(32.0))));
}

}  // namespace
}  // namespace nanoserve
