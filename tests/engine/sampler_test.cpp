#include "engine/sampler.h"

#include <gtest/gtest.h>

#include <cmath>
#include <set>

#include "util/error.h"

namespace nanoserve {
namespace {

SamplingParams params(float temperature) {
  SamplingParams p;
  p.temperature = temperature;
  return p;
}

TEST(Sampler, GreedyTakesTheFirstLargest) {
  const auto p = params(0);
  Sampler s(p, {}, 0);
  const float logits[5] = {0.1f, 3.0f, -1.0f, 3.0f, 2.9f};
  EXPECT_EQ(s.sample(logits, nullptr), 1);
}

TEST(Sampler, SameSeedSameDraws) {
  const float logits[4] = {1.0f, 1.1f, 0.9f, 1.05f};
  const auto p = params(1);
  Sampler a(p, {}, 42), b(p, {}, 42);
  for (int i = 0; i < 50; ++i) EXPECT_EQ(a.sample(logits, nullptr), b.sample(logits, nullptr));
}

// Draw frequencies follow softmax(logits / T) (4-sigma bounds over 20000 draws).
TEST(Sampler, TemperatureDrawsFollowSoftmax) {
  const float logits[3] = {0.0f, 1.0f, 2.0f};
  const auto p = params(2);
  Sampler s(p, {}, 1);
  int counts[3] = {};
  const int draws = 20000;
  for (int i = 0; i < draws; ++i) counts[s.sample(logits, nullptr)]++;
  double z = 0;
  for (float l : logits) z += std::exp(l / 2);
  for (int i = 0; i < 3; ++i) {
    const double prob = std::exp(logits[i] / 2) / z;
    EXPECT_NEAR(counts[i] / static_cast<double>(draws), prob, 4 * std::sqrt(prob * (1 - prob) / draws)) << i;
  }
}

std::set<int32_t> drawn(const SamplingParams& p, std::span<const float> logits) {
  Sampler s(p, {}, 9);
  std::set<int32_t> seen;
  for (int i = 0; i < 2000; ++i) seen.insert(s.sample(logits, nullptr));
  return seen;
}

TEST(Sampler, TopKTopPMinPFilter) {
  // probabilities at T=1: about 0.64, 0.24, 0.09, 0.03
  const float logits[4] = {3.0f, 2.0f, 1.0f, 0.0f};
  auto p = params(1);
  p.top_k = 2;
  EXPECT_EQ(drawn(p, logits), (std::set<int32_t>{0, 1}));
  p = params(1);
  p.top_p = 0.8f;  // 0.64 < 0.8 <= 0.64 + 0.24
  EXPECT_EQ(drawn(p, logits), (std::set<int32_t>{0, 1}));
  p = params(1);
  p.min_p = 0.2f;  // keeps tokens with p >= 0.128
  EXPECT_EQ(drawn(p, logits), (std::set<int32_t>{0, 1}));
  p = params(1);
  EXPECT_EQ(drawn(p, logits).size(), 4u);
}

TEST(Sampler, PenaltiesAndBias) {
  auto p = params(0);
  p.logit_bias = {{2, 5.0f}};
  Sampler biased(p, {}, 0);
  const float logits[3] = {1.0f, 2.0f, 0.0f};
  EXPECT_EQ(biased.sample(logits, nullptr), 2);

  p = params(0);
  p.repetition_penalty = 4.0f;  // token 1 is in the prompt: 2.0 / 4 = 0.5 < 1.0
  Sampler repeated(p, std::vector<int32_t>{1}, 0);
  EXPECT_EQ(repeated.sample(logits, nullptr), 0);

  p = params(0);
  p.frequency_penalty = 0.6f;  // each time token 1 is generated it loses 0.6
  Sampler frequent(p, {}, 0);
  EXPECT_EQ(frequent.sample(logits, nullptr), 1);  // 2.0
  EXPECT_EQ(frequent.sample(logits, nullptr), 1);  // 1.4
  EXPECT_EQ(frequent.sample(logits, nullptr), 0);  // 0.8 < 1.0
}

TEST(Sampler, LogprobsAreLogSoftmaxOfRawLogits) {
  auto p = params(0);
  p.logprobs = 2;
  p.logit_bias = {{0, 10.0f}};  // changes the choice, not the reported distribution
  Sampler s(p, {}, 0);
  const float logits[3] = {0.0f, 1.0f, 2.0f};
  TokenLogprob lp{};
  EXPECT_EQ(s.sample(logits, &lp), 0);
  const double z = std::log(1 + std::exp(1.0) + std::exp(2.0));
  EXPECT_NEAR(lp.logprob, 0 - z, 1e-6);
  ASSERT_EQ(lp.top.size(), 2u);
  EXPECT_EQ(lp.top[0].first, 2);
  EXPECT_NEAR(lp.top[0].second, 2 - z, 1e-6);
  EXPECT_EQ(lp.top[1].first, 1);
}

TEST(SamplingParams, ValidationNamesTheField) {
  SamplingParams p;
  p.top_p = 1.5f;
  try {
    p.validate(100);
    FAIL();
  } catch (const Error& e) {
    EXPECT_STREQ(e.what(), "top_p must be in (0, 1], got 1.5");
  }
  p = {};
  p.logit_bias = {{100, 1.0f}};
  EXPECT_THROW(p.validate(100), Error);
  p = {};
  p.logprobs = 21;
  EXPECT_THROW(p.validate(100), Error);
  p = {};
  p.temperature = -1;
  EXPECT_THROW(p.validate(100), Error);
}

}  // namespace
}  // namespace nanoserve
