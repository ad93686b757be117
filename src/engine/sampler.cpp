#include "engine/sampler.h"

#include <cmath>
#include <vector>

#include "util/error.h"

namespace nanoserve {

int32_t argmax(std::span<const float> logits) {
  size_t best = 0;
  for (size_t i = 1; i < logits.size(); ++i) {
    if (logits[i] > logits[best]) best = i;
  }
  return static_cast<int32_t>(best);
}

Sampler::Sampler(const SamplingParams& params) : params_(params), rng_(params.seed) {
  if (!(params.temperature >= 0) || !std::isfinite(params.temperature)) {
    fail("temperature must be a finite number >= 0, got {}", params.temperature);
  }
}

int32_t Sampler::sample(std::span<const float> logits) {
  if (params_.temperature == 0.0f) return argmax(logits);
  const float max_logit = logits[static_cast<size_t>(argmax(logits))];
  std::vector<double> weights(logits.size());
  for (size_t i = 0; i < logits.size(); ++i) weights[i] = std::exp((logits[i] - max_logit) / params_.temperature);
  std::discrete_distribution<int32_t> pick(weights.begin(), weights.end());
  return pick(rng_);
}

}  // namespace nanoserve
