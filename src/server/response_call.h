// One POST /v1/responses call: its engine request, and the answer as a Responses object, whole or
// as the API's event stream (response.created, response.in_progress, output items added, text
// deltas, done, response.completed or response.incomplete, each with a sequence number). Reasoning
// (with --reasoning-parser) is a reasoning item before the message; function calls are
// function_call items. With tools, the text is held until the reply ends, since it may be a call.
// A finished response is stored (store: true) with its conversation for previous_response_id.
#pragma once

#include <chrono>
#include <functional>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "server/generation.h"
#include "server/reasoning.h"
#include "server/response_store.h"
#include "server/responses_request.h"

namespace nanoserve::server {

class ResponseCall : public std::enable_shared_from_this<ResponseCall> {
 public:
  using Done = std::function<void(int status, const CallUsage& usage)>;

  // Submits the request; throws ApiError (400) if the engine refuses it, before anything is sent.
  static void start(const GenerationContext& context, ResponseStore& store, std::shared_ptr<Exchange> exchange,
                    ResponsesRequest meta, GenerationRequest request, Prompt prompt, Done done);

 private:
  enum class Open { None, Reasoning, Message };  // the streamed output item still open

  ResponseCall(const GenerationContext& context, ResponseStore& store, std::shared_ptr<Exchange> exchange,
               ResponsesRequest meta, GenerationRequest request, Prompt prompt, Done done);
  void submit();
  void on_event(const Event& event);
  void stream_text(const ReasoningSplitter::Parts& parts);
  void open_item(Open kind);
  void close_item();
  void complete(const Event& last);
  void fail_stream(const std::string& message);

  nlohmann::ordered_json response_json(const std::string& status) const;
  nlohmann::ordered_json output_items() const;
  nlohmann::ordered_json message_item(const std::string& status) const;
  nlohmann::ordered_json reasoning_item(const std::string& status) const;
  nlohmann::ordered_json usage_json() const;
  void send(nlohmann::ordered_json event);  // one server-sent event, typed and numbered
  CallUsage call_usage() const;

  GenerationContext context_;
  ResponseStore& store_;
  std::shared_ptr<Exchange> exchange_;
  ResponsesRequest meta_;
  GenerationRequest request_;
  Prompt prompt_;
  Done done_;
  std::string id_, message_id_, reasoning_id_;
  int64_t created_;
  std::chrono::steady_clock::time_point arrival_;
  std::optional<std::chrono::steady_clock::time_point> first_token_;
  uint64_t engine_id_ = 0;
  std::optional<ReasoningSplitter> splitter_;
  std::string content_, reasoning_;
  ParsedReply reply_;                                          // at the end: the content and the calls in it
  std::vector<std::pair<std::string, std::string>> call_ids_;  // per call: its item id and call_id
  std::optional<FinishReason> finish_;
  int64_t completion_tokens_ = 0, cached_tokens_ = 0;
  int64_t sequence_ = 0;
  Open open_ = Open::None;
  int output_index_ = -1;
  bool client_gone_ = false;
};

}  // namespace nanoserve::server
