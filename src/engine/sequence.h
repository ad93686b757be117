// A sequence being generated: one sample of one request, with its tokens, KV blocks and the state
// of its sampler, detokenizer and stop strings.
#pragma once

#include <cstdint>
#include <memory>
#include <vector>

#include "engine/request.h"
#include "engine/sampler.h"
#include "engine/stop_matcher.h"
#include "grammar/matcher.h"
#include "model/pooling.h"
#include "tokenizer/stream_decoder.h"

namespace nanoserve {

// What the samples of one request share.
struct RequestState {
  uint64_t id;
  SamplingParams params;
  EventCallback callback;
};

struct Sequence {
  std::shared_ptr<RequestState> request;
  int32_t index = 0;            // which sample
  uint64_t arrival = 0;         // admission order: preemption takes the newest first
  std::vector<int32_t> tokens;  // prompt, then generated tokens
  int64_t prompt_len = 0;
  int64_t computed = 0;                    // leading tokens whose keys and values are in the cache
  std::vector<int32_t> blocks;             // block table
  int64_t published = 0;                   // leading full blocks published to the prefix cache
  uint64_t chain_hash = 0;                 // hash of those blocks
  int64_t cached_prompt_tokens = 0;        // prompt tokens found in the prefix cache at admission
  bool forked = false;                     // the n > 1 siblings have been made
  std::unique_ptr<Sampler> sampler;        // absent for an embedding
  std::unique_ptr<Pooler> pooler;          // an embedding's: it pools the prompt instead of sampling
  std::unique_ptr<StreamDecoder> decoder;  // absent without a tokenizer
  StopMatcher stop{{}};
  std::unique_ptr<grammar::Matcher> matcher;  // with a grammar: where the output is in it
  std::string trigger_tail;  // a lazy grammar not yet triggered: the output's last bytes, that may begin the trigger

  int64_t generated() const { return static_cast<int64_t>(tokens.size()) - prompt_len; }
  int64_t pending() const { return static_cast<int64_t>(tokens.size()) - computed; }
};

}  // namespace nanoserve
