#include "engine/request.h"

#include <cmath>

#include "util/error.h"

namespace nanoserve {

void SamplingParams::validate(int64_t vocab_size) const {
  auto finite = [](float v) { return std::isfinite(v); };
  if (!finite(temperature) || temperature < 0) fail("temperature must be a finite number >= 0, got {}", temperature);
  if (top_k < 0) fail("top_k must be >= 0 (0 turns it off), got {}", top_k);
  if (!finite(top_p) || top_p <= 0 || top_p > 1) fail("top_p must be in (0, 1], got {}", top_p);
  if (!finite(min_p) || min_p < 0 || min_p > 1) fail("min_p must be in [0, 1], got {}", min_p);
  if (!finite(repetition_penalty) || repetition_penalty <= 0)
    fail("repetition_penalty must be > 0, got {}", repetition_penalty);
  if (!finite(presence_penalty) || std::abs(presence_penalty) > 2)
    fail("presence_penalty must be in [-2, 2], got {}", presence_penalty);
  if (!finite(frequency_penalty) || std::abs(frequency_penalty) > 2)
    fail("frequency_penalty must be in [-2, 2], got {}", frequency_penalty);
  for (const auto& [token, bias] : logit_bias) {
    if (token < 0 || token >= vocab_size)
      fail("logit_bias: token {} is outside the vocabulary of {}", token, vocab_size);
    if (!finite(bias) || std::abs(bias) > 100)
      fail("logit_bias: bias {} for token {} must be in [-100, 100]", bias, token);
  }
  if (max_tokens < 1) fail("max_tokens must be >= 1, got {}", max_tokens);
  for (int32_t t : stop_token_ids) {
    if (t < 0 || t >= vocab_size) fail("stop_token_ids: token {} is outside the vocabulary of {}", t, vocab_size);
  }
  for (const auto& s : stop) {
    if (s.empty()) fail("stop strings must not be empty");
  }
  if (logprobs < -1 || logprobs > 20) fail("logprobs must be between 0 and 20, got {}", logprobs);
  if (n < 1 || n > 128) fail("n must be between 1 and 128, got {}", n);
}

const char* finish_reason_name(FinishReason reason) {
  switch (reason) {
    case FinishReason::Stop: return "stop";
    case FinishReason::Length: return "length";
    case FinishReason::Cancelled: return "cancelled";
    case FinishReason::Error: return "error";
  }
  return "?";
}

}  // namespace nanoserve
