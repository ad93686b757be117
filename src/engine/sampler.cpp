#include "engine/sampler.h"

#include <algorithm>
#include <cmath>
#include <numeric>

namespace nanoserve {

int32_t argmax(std::span<const float> logits) {
  size_t best = 0;
  for (size_t i = 1; i < logits.size(); ++i) {
    if (logits[i] > logits[best]) best = i;
  }
  return static_cast<int32_t>(best);
}

TokenLogprob logprobs_of(std::span<const float> logits, int32_t token, int32_t top) {
  const float max_logit = logits[static_cast<size_t>(argmax(logits))];
  double sum = 0;
  for (float l : logits) sum += std::exp(static_cast<double>(l) - max_logit);
  const double log_z = max_logit + std::log(sum);
  auto logprob = [&](int32_t t) { return static_cast<float>(logits[static_cast<size_t>(t)] - log_z); };
  TokenLogprob out{token, logprob(token), {}};
  std::vector<int32_t> order(logits.size());
  std::iota(order.begin(), order.end(), 0);
  const auto k = std::min<size_t>(static_cast<size_t>(top), order.size());
  std::partial_sort(order.begin(), order.begin() + static_cast<std::ptrdiff_t>(k), order.end(),
                    [&](int32_t a, int32_t b) {
                      return logits[static_cast<size_t>(a)] > logits[static_cast<size_t>(b)] ||
                             (logits[static_cast<size_t>(a)] == logits[static_cast<size_t>(b)] && a < b);
                    });
  for (size_t i = 0; i < k; ++i) out.top.emplace_back(order[i], logprob(order[i]));
  return out;
}

Sampler::Sampler(const SamplingParams& params, std::span<const int32_t> prompt, uint64_t seed)
    : params_(params), rng_(seed), prompt_tokens_(prompt.begin(), prompt.end()) {}

void Sampler::adjust(std::vector<float>& logits) const {
  for (const auto& [token, bias] : params_.logit_bias) logits[static_cast<size_t>(token)] += bias;
  if (params_.repetition_penalty != 1.0f) {
    auto penalize = [&](int32_t t) {
      float& l = logits[static_cast<size_t>(t)];
      l = l > 0 ? l / params_.repetition_penalty : l * params_.repetition_penalty;
    };
    for (int32_t t : prompt_tokens_) penalize(t);
    for (const auto& [t, _] : generated_counts_) {
      if (!prompt_tokens_.count(t)) penalize(t);
    }
  }
  for (const auto& [t, count] : generated_counts_) {
    logits[static_cast<size_t>(t)] -= params_.presence_penalty + params_.frequency_penalty * static_cast<float>(count);
  }
}

int32_t Sampler::draw(std::vector<float>& logits) {
  if (params_.temperature == 0.0f) return argmax(logits);
  // Candidates sorted by logit, most likely first (ties by token id, for determinism).
  std::vector<int32_t> order(logits.size());
  std::iota(order.begin(), order.end(), 0);
  std::sort(order.begin(), order.end(), [&](int32_t a, int32_t b) {
    return logits[static_cast<size_t>(a)] > logits[static_cast<size_t>(b)] ||
           (logits[static_cast<size_t>(a)] == logits[static_cast<size_t>(b)] && a < b);
  });
  size_t keep = order.size();
  if (params_.top_k > 0) keep = std::min(keep, static_cast<size_t>(params_.top_k));
  const float top = logits[static_cast<size_t>(order[0])];
  std::vector<double> probs(keep);
  double sum = 0;
  for (size_t i = 0; i < keep; ++i) {
    probs[i] = std::exp((static_cast<double>(logits[static_cast<size_t>(order[i])]) - top) / params_.temperature);
    sum += probs[i];
  }
  for (auto& p : probs) p /= sum;
  if (params_.top_p < 1.0f) {
    double cumulative = 0;
    size_t i = 0;
    while (i < keep && cumulative < params_.top_p) cumulative += probs[i++];
    keep = std::max<size_t>(i, 1);
  }
  if (params_.min_p > 0.0f) {
    size_t i = 1;
    while (i < keep && probs[i] >= params_.min_p * probs[0]) ++i;
    keep = i;
  }
  std::uniform_real_distribution<double> uniform(0.0, 1.0);
  double total = std::accumulate(probs.begin(), probs.begin() + static_cast<std::ptrdiff_t>(keep), 0.0);
  double u = uniform(rng_) * total;
  for (size_t i = 0; i < keep; ++i) {
    u -= probs[i];
    if (u < 0) return order[i];
  }
  return order[keep - 1];
}

bool Sampler::plain_greedy() const {
  const SamplingParams& p = params_;
  return p.temperature == 0.0f && p.logit_bias.empty() && p.repetition_penalty == 1.0f && p.presence_penalty == 0.0f &&
         p.frequency_penalty == 0.0f && p.logprobs < 0;
}

int32_t Sampler::sample(std::span<const float> raw, TokenLogprob* logprob) {
  std::vector<float> logits(raw.begin(), raw.end());
  adjust(logits);
  const int32_t token = draw(logits);
  if (logprob && params_.logprobs >= 0) *logprob = logprobs_of(raw, token, params_.logprobs);
  ++generated_counts_[token];
  return token;
}

}  // namespace nanoserve
