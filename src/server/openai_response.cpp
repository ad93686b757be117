#include "server/openai_response.h"

#include <fmt/format.h>

#include <chrono>
#include <random>

namespace nanoserve::server {

using json = nlohmann::json;

std::string random_id(const char* prefix) {
  static thread_local std::mt19937_64 rng{std::random_device{}()};
  return fmt::format("{}-{:016x}{:08x}", prefix, rng(), static_cast<uint32_t>(rng()));
}

std::string item_id(const char* prefix) {
  std::string id = random_id(prefix);
  id[std::string_view(prefix).size()] = '_';
  return id;
}

int64_t unix_time() {
  return std::chrono::duration_cast<std::chrono::seconds>(std::chrono::system_clock::now().time_since_epoch()).count();
}

std::string dump(const json& j) { return j.dump(-1, ' ', false, json::error_handler_t::replace); }

std::string sse(const json& j) { return "data: " + dump(j) + "\n\n"; }

std::string token_text(const Tokenizer& tokenizer, int32_t token) {
  // Round-trip through the replacing serializer so that the text is valid UTF-8.
  return json::parse(dump(json(tokenizer.token_bytes(token, /*skip_special=*/false)))).get<std::string>();
}

json completion_logprobs(const Tokenizer& tokenizer, const std::vector<TokenLogprob>& logprobs, int64_t& text_offset) {
  json out = {{"tokens", json::array()},
              {"token_logprobs", json::array()},
              {"top_logprobs", json::array()},
              {"text_offset", json::array()}};
  for (const auto& lp : logprobs) {
    out["tokens"].push_back(token_text(tokenizer, lp.token));
    out["token_logprobs"].push_back(lp.logprob);
    json top = json::object();
    for (const auto& [id, value] : lp.top) top[token_text(tokenizer, id)] = value;
    out["top_logprobs"].push_back(std::move(top));
    out["text_offset"].push_back(text_offset);
    text_offset += static_cast<int64_t>(tokenizer.token_bytes(lp.token, /*skip_special=*/false).size());
  }
  return out;
}

namespace {
json token_entry(const Tokenizer& tokenizer, int32_t token, float logprob) {
  const std::string raw = tokenizer.token_bytes(token, /*skip_special=*/false);
  json bytes = json::array();
  for (unsigned char c : raw) bytes.push_back(c);
  return {{"token", token_text(tokenizer, token)}, {"logprob", logprob}, {"bytes", std::move(bytes)}};
}
}  // namespace

json chat_logprobs(const Tokenizer& tokenizer, const std::vector<TokenLogprob>& logprobs) {
  json content = json::array();
  for (const auto& lp : logprobs) {
    json entry = token_entry(tokenizer, lp.token, lp.logprob);
    entry["top_logprobs"] = json::array();
    for (const auto& [id, value] : lp.top) entry["top_logprobs"].push_back(token_entry(tokenizer, id, value));
    content.push_back(std::move(entry));
  }
  return {{"content", std::move(content)}};
}

json usage(int64_t prompt_tokens, int64_t completion_tokens, int64_t cached_tokens) {
  return {{"prompt_tokens", prompt_tokens},
          {"completion_tokens", completion_tokens},
          {"total_tokens", prompt_tokens + completion_tokens},
          {"prompt_tokens_details", {{"cached_tokens", cached_tokens}}}};
}

const char* finish_reason(FinishReason reason) {
  return reason == FinishReason::Cancelled ? "abort" : finish_reason_name(reason);
}

}  // namespace nanoserve::server
