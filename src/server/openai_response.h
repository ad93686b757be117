// The JSON shapes OpenAI's API answers with: logprobs of both APIs, usage, server-sent events.
#pragma once

#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "engine/request.h"
#include "tokenizer/tokenizer.h"

namespace nanoserve::server {

// Serialized JSON; invalid UTF-8 (a token can end inside a character) becomes U+FFFD, never a throw.
std::string dump(const nlohmann::json& j);
std::string random_id(const char* prefix);  // "prefix-" and 24 random hex digits (chatcmpl-...)
std::string item_id(const char* prefix);    // "prefix_" and 24 random hex digits (call_..., resp_..., msg_...)
int64_t unix_time();                        // seconds since 1970, as "created" fields are
std::string sse(const nlohmann::json& j);   // "data: {...}\n\n"

// A token as text for logprobs: its bytes, with any incomplete UTF-8 replaced.
std::string token_text(const Tokenizer& tokenizer, int32_t token);

// /v1/completions: {"tokens", "token_logprobs", "top_logprobs", "text_offset"}; offsets start at
// text_offset and advance by each token's text.
nlohmann::json completion_logprobs(const Tokenizer& tokenizer, const std::vector<TokenLogprob>& logprobs,
                                   int64_t& text_offset);
// /v1/chat/completions: {"content": [{"token", "logprob", "bytes", "top_logprobs"}]}.
nlohmann::json chat_logprobs(const Tokenizer& tokenizer, const std::vector<TokenLogprob>& logprobs);

nlohmann::json usage(int64_t prompt_tokens, int64_t completion_tokens, int64_t cached_tokens);

// The OpenAI name of a finish reason (a cancelled sequence is "abort", as vLLM reports it).
const char* finish_reason(FinishReason reason);

}  // namespace nanoserve::server
