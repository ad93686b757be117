#include "engine/sampler.h"

#include <gtest/gtest.h>

#include <cmath>

#include "util/error.h"

namespace nanoserve {
namespace {

TEST(Sampler, GreedyTakesTheFirstLargest) {
  Sampler s({});
  const float logits[5] = {0.1f, 3.0f, -1.0f, 3.0f, 2.9f};
  EXPECT_EQ(s.sample(logits), 1);
}

TEST(Sampler, SameSeedSameDraws) {
  const float logits[4] = {1.0f, 1.1f, 0.9f, 1.05f};
  Sampler a({.temperature = 1.0f, .seed = 42}), b({.temperature = 1.0f, .seed = 42});
  for (int i = 0; i < 50; ++i) EXPECT_EQ(a.sample(logits), b.sample(logits));
}

// Draw frequencies follow softmax(logits / T) (4-sigma bounds over 20000 draws).
TEST(Sampler, TemperatureDrawsFollowSoftmax) {
  const float logits[3] = {0.0f, 1.0f, 2.0f};
  const float temperature = 2.0f;
  Sampler s({.temperature = temperature, .seed = 1});
  int counts[3] = {};
  const int draws = 20000;
  for (int i = 0; i < draws; ++i) counts[s.sample(logits)]++;
  double z = 0;
  for (float l : logits) z += std::exp(l / temperature);
  for (int i = 0; i < 3; ++i) {
    const double p = std::exp(logits[i] / temperature) / z;
    EXPECT_NEAR(counts[i] / static_cast<double>(draws), p, 4 * std::sqrt(p * (1 - p) / draws)) << i;
  }
}

TEST(Sampler, RejectsBadTemperature) {
  EXPECT_THROW(Sampler({.temperature = -1.0f}), Error);
  EXPECT_THROW(Sampler({.temperature = NAN}), Error);
}

}  // namespace
}  // namespace nanoserve
