#include "server/response_call.h"

#include <fmt/format.h>

#include <boost/asio/post.hpp>

#include "server/api_error.h"
#include "server/openai_response.h"
#include "util/error.h"

namespace nanoserve::server {

using json = nlohmann::ordered_json;

void ResponseCall::start(const GenerationContext& context, ResponseStore& store, std::shared_ptr<Exchange> exchange,
                         ResponsesRequest meta, GenerationRequest request, Prompt prompt, Done done) {
  std::shared_ptr<ResponseCall> call(new ResponseCall(context, store, std::move(exchange), std::move(meta),
                                                      std::move(request), std::move(prompt), std::move(done)));
  call->submit();
}

ResponseCall::ResponseCall(const GenerationContext& context, ResponseStore& store, std::shared_ptr<Exchange> exchange,
                           ResponsesRequest meta, GenerationRequest request, Prompt prompt, Done done)
    : context_(context),
      store_(store),
      exchange_(std::move(exchange)),
      meta_(std::move(meta)),
      request_(std::move(request)),
      prompt_(std::move(prompt)),
      done_(std::move(done)),
      id_(item_id("resp")),
      message_id_(item_id("msg")),
      reasoning_id_(item_id("rs")),
      created_(unix_time()),
      arrival_(std::chrono::steady_clock::now()) {
  if (context_.reasoning) splitter_.emplace(*context_.reasoning);
}

void ResponseCall::submit() {
  auto self = shared_from_this();
  try {
    engine_id_ = context_.engine.submit({prompt_.ids, request_.params}, [self](const Event& event) {
      boost::asio::post(self->context_.io, [self, event] { self->on_event(event); });
    });
  } catch (const Error& e) {
    done_ = nullptr;  // the caller answers and counts this call
    throw ApiError(400, e.what());
  }
  exchange_->on_close([weak = weak_from_this()] {
    if (auto call = weak.lock()) {
      call->client_gone_ = true;
      call->context_.engine.cancel(call->engine_id_);
    }
  });
  if (meta_.stream) {
    exchange_->start_stream("text/event-stream");
    send({{"type", "response.created"}, {"response", response_json("in_progress")}});
    send({{"type", "response.in_progress"}, {"response", response_json("in_progress")}});
  }
}

void ResponseCall::on_event(const Event& event) {
  if (!event.tokens.empty()) {
    const auto now = std::chrono::steady_clock::now();
    if (!first_token_) {
      first_token_ = now;
      context_.metrics.first_token(std::chrono::duration<double>(now - arrival_).count());
    }
  }
  completion_tokens_ += static_cast<int64_t>(event.tokens.size());
  ReasoningSplitter::Parts parts;
  if (splitter_) {
    parts = splitter_->push(event.text, event.finish.has_value());
  } else {
    parts.content = event.text;
  }
  reasoning_ += parts.reasoning;
  content_ += parts.content;
  if (meta_.stream && !client_gone_ && event.finish != FinishReason::Error) stream_text(parts);
  if (event.finish) complete(event);
}

// Text as it comes: reasoning deltas in a reasoning item, then content deltas in a message. With
// tools the content waits for the end (it may be a call).
void ResponseCall::stream_text(const ReasoningSplitter::Parts& parts) {
  if (!parts.reasoning.empty()) {
    open_item(Open::Reasoning);
    send({{"type", "response.reasoning_text.delta"},
          {"item_id", reasoning_id_},
          {"output_index", output_index_},
          {"content_index", 0},
          {"delta", parts.reasoning}});
  }
  if (!parts.content.empty() && !request_.tools.active()) {
    open_item(Open::Message);
    send({{"type", "response.output_text.delta"},
          {"item_id", message_id_},
          {"output_index", output_index_},
          {"content_index", 0},
          {"delta", parts.content},
          {"logprobs", json::array()}});
  }
}

void ResponseCall::open_item(Open kind) {
  if (open_ == kind) return;
  close_item();
  open_ = kind;
  ++output_index_;
  const bool message = kind == Open::Message;
  json item = message ? json{{"id", message_id_},
                             {"type", "message"},
                             {"status", "in_progress"},
                             {"role", "assistant"},
                             {"content", json::array()}}
                      : json{{"id", reasoning_id_}, {"type", "reasoning"}, {"summary", json::array()}};
  send({{"type", "response.output_item.added"}, {"output_index", output_index_}, {"item", std::move(item)}});
  json part = message ? json{{"type", "output_text"}, {"text", ""}, {"annotations", json::array()}}
                      : json{{"type", "reasoning_text"}, {"text", ""}};
  send({{"type", "response.content_part.added"},
        {"item_id", message ? message_id_ : reasoning_id_},
        {"output_index", output_index_},
        {"content_index", 0},
        {"part", std::move(part)}});
}

void ResponseCall::close_item() {
  if (open_ == Open::None) return;
  const bool message = open_ == Open::Message;
  const std::string& id = message ? message_id_ : reasoning_id_;
  if (message) {
    send({{"type", "response.output_text.done"},
          {"item_id", id},
          {"output_index", output_index_},
          {"content_index", 0},
          {"text", content_},
          {"logprobs", json::array()}});
  } else {
    send({{"type", "response.reasoning_text.done"},
          {"item_id", id},
          {"output_index", output_index_},
          {"content_index", 0},
          {"text", reasoning_}});
  }
  json item = message ? message_item("completed") : reasoning_item("completed");
  send({{"type", "response.content_part.done"},
        {"item_id", id},
        {"output_index", output_index_},
        {"content_index", 0},
        {"part", item["content"][0]}});
  send({{"type", "response.output_item.done"}, {"output_index", output_index_}, {"item", std::move(item)}});
  open_ = Open::None;
}

void ResponseCall::complete(const Event& last) {
  finish_ = last.finish;
  cached_tokens_ = last.cached_prompt_tokens;
  context_.metrics.tokens(static_cast<int64_t>(prompt_.ids.size()), completion_tokens_);
  reply_ = request_.tools.active() ? parse_tool_calls(request_.tool_format, content_) : ParsedReply{content_, {}};
  for (size_t i = 0; i < reply_.calls.size(); ++i) call_ids_.emplace_back(item_id("fc"), item_id("call"));
  int status = 200;
  if (client_gone_) {
    status = 499;
  } else if (last.finish == FinishReason::Error) {
    status = 500;
    if (meta_.stream) {
      fail_stream(last.error);
    } else {
      exchange_->respond(http::status::internal_server_error, "application/json",
                         dump(ApiError(500, last.error, "", "server_error").body()));
    }
  } else {
    const std::string state =
        last.finish == FinishReason::Stop ? "completed" : "incomplete";  // the length, or a shutdown
    if (meta_.stream) {
      close_item();
      // Held content (with tools) and the calls, each item added and done at once.
      const json items = output_items();
      for (const json& item : items) {
        if (item["type"] == "reasoning" || (item["type"] == "message" && !request_.tools.active()))
          continue;  // streamed
        ++output_index_;
        json added = item;
        if (added["type"] == "function_call") added["arguments"] = "";
        added["status"] = "in_progress";
        send({{"type", "response.output_item.added"}, {"output_index", output_index_}, {"item", std::move(added)}});
        if (item["type"] == "function_call") {
          send({{"type", "response.function_call_arguments.delta"},
                {"item_id", item["id"]},
                {"output_index", output_index_},
                {"delta", item["arguments"]}});
          send({{"type", "response.function_call_arguments.done"},
                {"item_id", item["id"]},
                {"output_index", output_index_},
                {"arguments", item["arguments"]}});
        } else {
          send({{"type", "response.output_text.delta"},
                {"item_id", item["id"]},
                {"output_index", output_index_},
                {"content_index", 0},
                {"delta", item["content"][0]["text"]},
                {"logprobs", json::array()}});
        }
        send({{"type", "response.output_item.done"}, {"output_index", output_index_}, {"item", item}});
      }
      send({{"type", "response." + state}, {"response", response_json(state)}});
      exchange_->end_stream();
    } else {
      exchange_->respond(http::status::ok, "application/json", dump(response_json(state)));
    }
    if (meta_.store) {
      json conversation = meta_.conversation;
      json assistant = {{"role", "assistant"}, {"content", reply_.content}};
      if (!reply_.calls.empty()) {
        assistant["tool_calls"] = json::array();
        for (size_t i = 0; i < reply_.calls.size(); ++i) {
          assistant["tool_calls"].push_back(
              {{"id", call_ids_[i].second},
               {"type", "function"},
               {"function", {{"name", reply_.calls[i].name}, {"arguments", reply_.calls[i].arguments}}}});
        }
      }
      conversation.push_back(std::move(assistant));
      store_.put(id_, {response_json(state), std::move(conversation)});
    }
  }
  if (done_) std::exchange(done_, nullptr)(status, call_usage());
}

void ResponseCall::fail_stream(const std::string& message) {
  json response = response_json("failed");
  response["error"] = {{"code", "server_error"}, {"message", message}};
  send({{"type", "response.failed"}, {"response", std::move(response)}});
  exchange_->end_stream();
}

json ResponseCall::message_item(const std::string& status) const {
  return {{"id", message_id_},
          {"type", "message"},
          {"status", status},
          {"role", "assistant"},
          {"content", json::array({{{"type", "output_text"},
                                    {"text", finish_ ? reply_.content : content_},
                                    {"annotations", json::array()},
                                    {"logprobs", json::array()}}})}};
}

json ResponseCall::reasoning_item(const std::string& status) const {
  return {{"id", reasoning_id_},
          {"type", "reasoning"},
          {"status", status},
          {"summary", json::array()},
          {"content", json::array({{{"type", "reasoning_text"}, {"text", reasoning_}}})}};
}

json ResponseCall::output_items() const {
  json items = json::array();
  if (!reasoning_.empty()) items.push_back(reasoning_item("completed"));
  if (!reply_.content.empty() || reply_.calls.empty()) items.push_back(message_item("completed"));
  for (size_t i = 0; i < reply_.calls.size(); ++i) {
    items.push_back({{"id", call_ids_[i].first},
                     {"type", "function_call"},
                     {"status", "completed"},
                     {"call_id", call_ids_[i].second},
                     {"name", reply_.calls[i].name},
                     {"arguments", reply_.calls[i].arguments}});
  }
  return items;
}

json ResponseCall::usage_json() const {
  const auto prompt = static_cast<int64_t>(prompt_.ids.size());
  return {{"input_tokens", prompt},
          {"input_tokens_details", {{"cached_tokens", cached_tokens_}}},
          {"output_tokens", completion_tokens_},
          {"output_tokens_details", {{"reasoning_tokens", 0}}},
          {"total_tokens", prompt + completion_tokens_}};
}

json ResponseCall::response_json(const std::string& status) const {
  const bool done = status != "in_progress";
  json r = {
      {"id", id_},
      {"object", "response"},
      {"created_at", created_},
      {"status", status},
      {"error", nullptr},
      {"incomplete_details", status == "incomplete"
                                 ? json{{"reason", finish_ == FinishReason::Length ? "max_output_tokens" : "cancelled"}}
                                 : json(nullptr)},
      {"model", context_.model_name},
      {"output", done && status != "failed" ? output_items() : json::array()},
      {"previous_response_id", meta_.previous_response_id.empty() ? json(nullptr) : json(meta_.previous_response_id)},
      {"store", meta_.store},
      {"reasoning", {{"effort", nullptr}, {"summary", nullptr}}},
      {"truncation", "disabled"},
      {"usage", done ? usage_json() : json(nullptr)}};
  for (const auto& [key, value] : meta_.echo.items()) r[key] = value;
  if (r["text"].is_null()) r["text"] = {{"format", {{"type", "text"}}}};
  if (r["tools"].is_null()) r["tools"] = json::array();
  if (r["tool_choice"].is_null()) r["tool_choice"] = "auto";
  if (r["parallel_tool_calls"].is_null()) r["parallel_tool_calls"] = true;
  if (r["metadata"].is_null()) r["metadata"] = json::object();
  return r;
}

void ResponseCall::send(json event) {
  const std::string type = event["type"].get<std::string>();
  event["sequence_number"] = sequence_++;
  exchange_->send(
      fmt::format("event: {}\ndata: {}\n\n", type, event.dump(-1, ' ', false, json::error_handler_t::replace)));
}

CallUsage ResponseCall::call_usage() const {
  CallUsage usage;
  usage.prompt_tokens = static_cast<int64_t>(prompt_.ids.size());
  usage.cached_tokens = cached_tokens_;
  usage.completion_tokens = completion_tokens_;
  if (first_token_) usage.ttft_seconds = std::chrono::duration<double>(*first_token_ - exchange_->arrived()).count();
  return usage;
}

}  // namespace nanoserve::server
