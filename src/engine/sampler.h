// Chooses a sequence's next token from its logits row: logit bias, repetition/presence/frequency
// penalties, then greedy at temperature 0, else temperature, top-k, top-p and min-p and a draw from
// the sequence's own seeded generator (so the batch around it cannot change its tokens).
#pragma once

#include <cstdint>
#include <random>
#include <span>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include "engine/request.h"

namespace nanoserve {

class Sampler {
 public:
  // prompt: for the repetition penalty. seed: the generator's seed for this sample.
  Sampler(const SamplingParams& params, std::span<const int32_t> prompt, uint64_t seed);

  // The next token, and its logprob entry when params.logprobs >= 0. Records the token as generated.
  int32_t sample(std::span<const float> logits, TokenLogprob* logprob);

  // True when the next token is the raw logits' argmax (temperature 0, no bias, penalties or
  // logprobs), which the backend can pick without copying the logits to the host.
  bool plain_greedy() const;
  // Records a token chosen by the backend's argmax.
  void record(int32_t token) { ++generated_counts_[token]; }

 private:
  void adjust(std::vector<float>& logits) const;  // bias and penalties
  int32_t draw(std::vector<float>& logits);       // temperature, filters, random draw

  const SamplingParams& params_;
  std::mt19937_64 rng_;
  std::unordered_set<int32_t> prompt_tokens_;
  std::unordered_map<int32_t, int32_t> generated_counts_;
};

// Index of the largest logit; the lowest index among equals.
int32_t argmax(std::span<const float> logits);

// log_softmax(logits)[token] and the `top` most likely tokens, most likely first.
TokenLogprob logprobs_of(std::span<const float> logits, int32_t token, int32_t top);

}  // namespace nanoserve
