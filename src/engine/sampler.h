// Chooses the next token from logits: greedy at temperature 0, else a draw from softmax(logits / T)
// with a seeded generator, so the same seed gives the same tokens.
#pragma once

#include <cstdint>
#include <random>
#include <span>

namespace nanoserve {

struct SamplingParams {
  float temperature = 0.0f;  // 0: greedy
  uint64_t seed = 0;
};

class Sampler {
 public:
  explicit Sampler(const SamplingParams& params);  // throws Error for a negative or non-finite temperature
  int32_t sample(std::span<const float> logits);

 private:
  SamplingParams params_;
  std::mt19937_64 rng_;
};

// Index of the largest logit; the lowest index among equals.
int32_t argmax(std::span<const float> logits);

}  // namespace nanoserve
