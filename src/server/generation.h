// One completions or chat-completions call in flight: its engine requests (one per prompt, each
// with n samples), the events they send back, and the answer they add up to, whole or streamed as
// server-sent events. Lives on the io thread; engine events are posted to it.
#pragma once

#include <boost/asio/io_context.hpp>
#include <chrono>
#include <functional>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <unordered_map>
#include <vector>

#include "engine/engine.h"
#include "server/http_server.h"
#include "server/metrics.h"
#include "server/openai_request.h"
#include "server/reasoning.h"
#include "server/request_log.h"

namespace nanoserve::server {

struct GenerationContext {
  boost::asio::io_context& io;
  Engine& engine;
  const Tokenizer& tokenizer;
  Metrics& metrics;
  std::string model_name;
  std::optional<ReasoningFormat> reasoning;  // chat replies: split <think>...</think> into reasoning_content
};

struct Prompt {
  std::vector<int32_t> ids;
  std::string text;  // for echo
};

class Generation : public std::enable_shared_from_this<Generation> {
 public:
  // Called once, when every engine request of the call has ended, with the HTTP status it got
  // (499 when the client went away first).
  using Done = std::function<void(int status, const CallUsage& usage)>;

  // Submits the prompts; throws ApiError (400) if the engine refuses one, before anything is sent.
  static void start(const GenerationContext& context, std::shared_ptr<Exchange> exchange, GenerationRequest request,
                    std::vector<Prompt> prompts, Done done);

 private:
  struct Choice {
    std::string text;       // chat with a reasoning parser: the content only
    std::string reasoning;  // chat with a reasoning parser: what was between <think> and </think>
    std::optional<ReasoningSplitter> splitter;
    std::vector<TokenLogprob> logprobs;
    int64_t text_offset = 0;  // completions logprobs: where the next token's text starts
    std::optional<FinishReason> finish;
    std::string error;
    int64_t completion_tokens = 0;
    bool sent_first = false;     // streaming: the role (chat) or echo (completions) chunk is out
    std::string held;            // streaming with tools: text that may be (or is) a tool call
    bool calls_started = false;  // streaming with tools: held text is a call
    bool plain = false;          // streaming with tools: this reply is content, no call can follow
    std::optional<std::chrono::steady_clock::time_point> last_token;
  };
  struct PromptState {
    uint64_t request_id = 0;
    int64_t prompt_tokens = 0, cached_tokens = 0;
  };

  Generation(const GenerationContext& context, std::shared_ptr<Exchange> exchange, GenerationRequest request,
             std::vector<Prompt> prompts, Done done);
  void submit_all();
  void on_event(const Event& event);
  // The event with its text split by the reasoning parser: returns the content's part, and streams
  // or keeps the reasoning's.
  Event without_reasoning(size_t index, const Event& event);
  void record_timing(Choice& choice, size_t tokens);
  void stream_event(size_t index, const Event& event);
  void stream_first(size_t index);
  // Streaming with tools: content as soon as it cannot be part of a call; calls when complete.
  void stream_tool_text(size_t index, const Event& event);
  void stream_tool_calls(size_t index, const std::optional<FinishReason>& finish);
  bool tools_active() const { return request_.kind == ApiKind::Chat && request_.tools.active(); }
  nlohmann::json tool_calls_json(const std::vector<ToolCall>& calls, bool streamed) const;
  nlohmann::json chunk(nlohmann::json choices) const;
  nlohmann::json choice_delta(size_t index, const std::string& text, const std::vector<TokenLogprob>& logprobs,
                              const std::optional<FinishReason>& finish);
  void complete();
  nlohmann::json full_response();
  CallUsage call_usage() const;
  nlohmann::json totals() const;
  void cancel_all();

  GenerationContext context_;
  std::shared_ptr<Exchange> exchange_;
  GenerationRequest request_;
  std::vector<Prompt> prompts_;
  Done done_;
  std::string id_;
  int64_t created_;
  std::chrono::steady_clock::time_point arrival_;
  std::optional<std::chrono::steady_clock::time_point> first_token_;  // of any choice
  std::vector<PromptState> prompt_states_;
  std::unordered_map<uint64_t, size_t> prompt_of_request_;
  std::vector<Choice> choices_;
  size_t finished_ = 0;
  bool client_gone_ = false;
};

}  // namespace nanoserve::server
