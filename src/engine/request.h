// What a caller asks of the engine and what it hears back.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "model/pooling.h"

namespace nanoserve {

namespace grammar {
struct Grammar;
}

struct SamplingParams {
  float temperature = 1.0f;                                // 0: greedy
  int32_t top_k = 0;                                       // 0: off
  float top_p = 1.0f;                                      // nucleus: smallest set of tokens with this much probability
  float min_p = 0.0f;                                      // drop tokens below min_p x the top probability
  float repetition_penalty = 1.0f;                         // > 1 discourages tokens of the prompt and the output
  float presence_penalty = 0.0f;                           // subtracted once from tokens already generated
  float frequency_penalty = 0.0f;                          // subtracted per occurrence in the generated tokens
  std::vector<std::pair<int32_t, float>> logit_bias = {};  // added to those tokens' logits
  std::optional<uint64_t> seed = {};                       // same seed, same tokens, whatever else is in the batch
  int32_t max_tokens = 16;
  std::vector<int32_t> stop_token_ids = {};  // end generation, not part of the output
  std::vector<std::string> stop = {};        // end generation when the text contains one; never emitted
  bool ignore_eos = false;
  int32_t logprobs = -1;  // -1: none; 0..20: the chosen token's logprob and this many top alternatives
  int32_t n = 1;          // independent samples sharing the prompt's KV blocks
  // Structured output: every sample's text is in this grammar's language, and ends (as a stop)
  // where the grammar completes. Null: free text.
  std::shared_ptr<const grammar::Grammar> grammar = {};
  // With a grammar: the output is free until it holds this text, and from the text's first byte on
  // it is in the grammar (a lazy grammar: a tool call constrained once the model begins one).
  // Empty: the grammar holds from the first token.
  std::string grammar_trigger = {};

  // Throws Error naming the first invalid field.
  void validate(int64_t vocab_size) const;
};

struct Request {
  std::vector<int32_t> prompt;
  SamplingParams params;
  // An embedding: the prompt is prefilled, nothing is generated, its KV blocks are freed at the end,
  // and its final hidden states are pooled into the final event's vector. params is then unused.
  std::optional<Pooling> embed = {};
};

enum class FinishReason { Stop, Length, Cancelled, Error };
const char* finish_reason_name(FinishReason reason);  // "stop", "length", "cancelled", "error"

struct TokenLogprob {
  int32_t token;
  float logprob;                               // log_softmax of the model's logits
  std::vector<std::pair<int32_t, float>> top;  // the most likely tokens, most likely first
};

// One step of one sample. Every sample's last event carries `finish`.
struct Event {
  uint64_t request_id = 0;
  int32_t index = 0;            // which of the n samples
  std::vector<int32_t> tokens;  // generated this step (empty on a final event without a token)
  std::string text;             // text that became final this step
  std::vector<TokenLogprob> logprobs;
  std::optional<FinishReason> finish;
  std::string error;             // with FinishReason::Error
  std::vector<float> embedding;  // an embedding request's vector, on its final event
  int64_t prompt_tokens = 0, cached_prompt_tokens = 0, completion_tokens = 0;  // on the final event
};

using EventCallback = std::function<void(const Event&)>;

}  // namespace nanoserve
