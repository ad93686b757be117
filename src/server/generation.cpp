#include "server/generation.h"

#include <fmt/format.h>

#include <boost/asio/post.hpp>
#include <random>

#include "server/api_error.h"
#include "server/openai_response.h"
#include "util/error.h"

namespace nanoserve::server {

using json = nlohmann::json;

void Generation::start(const GenerationContext& context, std::shared_ptr<Exchange> exchange, GenerationRequest request,
                       std::vector<Prompt> prompts, Done done) {
  std::shared_ptr<Generation> g(
      new Generation(context, std::move(exchange), std::move(request), std::move(prompts), std::move(done)));
  g->submit_all();
}

Generation::Generation(const GenerationContext& context, std::shared_ptr<Exchange> exchange, GenerationRequest request,
                       std::vector<Prompt> prompts, Done done)
    : context_(context),
      exchange_(std::move(exchange)),
      request_(std::move(request)),
      prompts_(std::move(prompts)),
      done_(std::move(done)),
      id_(random_id(request_.kind == ApiKind::Chat ? "chatcmpl" : "cmpl")),
      created_(unix_time()),
      arrival_(std::chrono::steady_clock::now()) {
  const auto n = static_cast<size_t>(std::max(1, request_.params.n));
  choices_.resize(prompts_.size() * n);
  if (context_.reasoning && request_.kind == ApiKind::Chat) {
    for (Choice& c : choices_) c.splitter.emplace(*context_.reasoning);
  }
  prompt_states_.resize(prompts_.size());
}

void Generation::submit_all() {
  auto self = shared_from_this();
  for (size_t i = 0; i < prompts_.size(); ++i) {
    prompt_states_[i].prompt_tokens = static_cast<int64_t>(prompts_[i].ids.size());
    EventCallback callback = [self](const Event& event) {
      boost::asio::post(self->context_.io, [self, event] { self->on_event(event); });
    };
    try {
      const uint64_t id = context_.engine.submit({prompts_[i].ids, request_.params}, std::move(callback));
      prompt_states_[i].request_id = id;
      prompt_of_request_[id] = i;
    } catch (const Error& e) {
      // The requests already queued end as cancelled; nobody is listening to them, and the caller
      // answers and counts this call.
      client_gone_ = true;
      done_ = nullptr;
      for (size_t j = 0; j < i; ++j) context_.engine.cancel(prompt_states_[j].request_id);
      finished_ = choices_.size() - i * static_cast<size_t>(request_.params.n);
      throw ApiError(400, prompts_.size() > 1 ? fmt::format("prompt {}: {}", i, e.what()) : std::string(e.what()));
    }
  }
  exchange_->on_close([weak = weak_from_this()] {
    if (auto g = weak.lock()) g->cancel_all();
  });
  if (request_.stream) {
    exchange_->start_stream("text/event-stream");
    for (size_t i = 0; i < choices_.size(); ++i) stream_first(i);
  }
}

void Generation::cancel_all() {
  client_gone_ = true;
  for (const auto& p : prompt_states_) context_.engine.cancel(p.request_id);
}

void Generation::record_timing(Choice& choice, size_t tokens) {
  if (tokens == 0) return;
  const auto now = std::chrono::steady_clock::now();
  if (!first_token_) first_token_ = now;
  if (!choice.last_token) {
    context_.metrics.first_token(std::chrono::duration<double>(now - arrival_).count());
  } else {
    context_.metrics.inter_token(std::chrono::duration<double>(now - *choice.last_token).count() /
                                 static_cast<double>(tokens));
  }
  choice.last_token = now;
}

void Generation::on_event(const Event& event) {
  const size_t prompt = prompt_of_request_.at(event.request_id);
  const size_t index = prompt * static_cast<size_t>(request_.params.n) + static_cast<size_t>(event.index);
  Choice& choice = choices_.at(index);
  record_timing(choice, event.tokens.size());
  choice.completion_tokens += static_cast<int64_t>(event.tokens.size());
  if (event.finish) {
    choice.finish = event.finish;
    choice.error = event.error;
    if (event.index == 0) prompt_states_[prompt].cached_tokens = event.cached_prompt_tokens;
  }
  if (!client_gone_) {
    const Event content = choice.splitter ? without_reasoning(index, event) : event;
    if (request_.stream) {
      stream_event(index, content);
    } else {
      choice.text += content.text;
      choice.logprobs.insert(choice.logprobs.end(), content.logprobs.begin(), content.logprobs.end());
    }
  }
  if (event.finish && ++finished_ == choices_.size()) complete();
}

Event Generation::without_reasoning(size_t index, const Event& event) {
  Choice& choice = choices_[index];
  ReasoningSplitter::Parts parts = choice.splitter->push(event.text, event.finish.has_value());
  if (request_.stream && !parts.reasoning.empty()) {
    json c = {{"index", index},
              {"delta", {{"reasoning_content", parts.reasoning}}},
              {"logprobs", nullptr},
              {"finish_reason", nullptr}};
    exchange_->send(sse(chunk(json::array({std::move(c)}))));
  }
  choice.reasoning += parts.reasoning;
  Event content = event;
  content.text = std::move(parts.content);
  return content;
}

json Generation::chunk(json choices) const {
  json j = {{"id", id_},
            {"object", request_.kind == ApiKind::Chat ? "chat.completion.chunk" : "text_completion"},
            {"created", created_},
            {"model", context_.model_name},
            {"choices", std::move(choices)}};
  if (request_.include_usage) j["usage"] = nullptr;
  return j;
}

json Generation::choice_delta(size_t index, const std::string& text, const std::vector<TokenLogprob>& logprobs,
                              const std::optional<FinishReason>& finish) {
  json c = {{"index", index}};
  if (request_.kind == ApiKind::Chat) {
    c["delta"] = text.empty() ? json::object() : json{{"content", text}};
    c["logprobs"] = logprobs.empty() ? json(nullptr) : chat_logprobs(context_.tokenizer, logprobs);
  } else {
    c["text"] = text;
    c["logprobs"] = logprobs.empty() ? json(nullptr)
                                     : completion_logprobs(context_.tokenizer, logprobs, choices_[index].text_offset);
  }
  c["finish_reason"] = finish ? json(finish_reason(*finish)) : json(nullptr);
  return c;
}

// The opening chunk of a choice: the assistant role (chat) or the echoed prompt (completions).
void Generation::stream_first(size_t index) {
  Choice& choice = choices_[index];
  choice.sent_first = true;
  if (request_.kind == ApiKind::Chat) {
    json c = {{"index", index},
              {"delta", {{"role", "assistant"}, {"content", ""}}},
              {"logprobs", nullptr},
              {"finish_reason", nullptr}};
    exchange_->send(sse(chunk(json::array({std::move(c)}))));
  } else if (request_.echo) {
    const std::string& text = prompts_[index / static_cast<size_t>(request_.params.n)].text;
    exchange_->send(sse(chunk(json::array({choice_delta(index, text, {}, std::nullopt)}))));
  }
}

void Generation::stream_event(size_t index, const Event& event) {
  if (event.finish == FinishReason::Error) {
    exchange_->send(sse(ApiError(500, event.error, "", "server_error").body()));
    return;
  }
  if (tools_active()) return stream_tool_text(index, event);
  if (!event.text.empty() || !event.logprobs.empty()) {
    exchange_->send(sse(chunk(json::array({choice_delta(index, event.text, event.logprobs, std::nullopt)}))));
  }
  if (event.finish) exchange_->send(sse(chunk(json::array({choice_delta(index, "", {}, event.finish)}))));
}

void Generation::stream_tool_text(size_t index, const Event& event) {
  Choice& choice = choices_[index];
  std::string content;
  if (choice.plain) {
    content = event.text;
  } else {
    choice.held += event.text;
    if (!request_.tools.enforced() && !choice.calls_started) {
      const CallStart start = find_call_start(request_.tool_format, choice.held);
      const size_t sure = start.call != std::string::npos ? start.call : start.content;
      content = choice.held.substr(0, sure);
      choice.held.erase(0, sure);
      choice.calls_started = start.call != std::string::npos;
      // Formats other than hermes write a call first or not at all.
      choice.plain = !choice.calls_started && !content.empty() && request_.tool_format != ToolCallFormat::Hermes;
      if (choice.plain) content += std::exchange(choice.held, {});
    }
  }
  if (!content.empty() || !event.logprobs.empty()) {
    exchange_->send(sse(chunk(json::array({choice_delta(index, content, event.logprobs, std::nullopt)}))));
  }
  if (event.finish) stream_tool_calls(index, event.finish);
}

// The end of a streamed reply with tools: the held text as calls (each a chunk with its id and
// name, then one with its arguments), or as content when it holds none.
void Generation::stream_tool_calls(size_t index, const std::optional<FinishReason>& finish) {
  Choice& choice = choices_[index];
  const ParsedReply reply = parse_tool_calls(request_.tool_format, choice.held);
  choice.held.clear();
  if (!reply.content.empty())
    exchange_->send(sse(chunk(json::array({choice_delta(index, reply.content, {}, std::nullopt)}))));
  const json calls = tool_calls_json(reply.calls, true);
  for (size_t i = 0; i < reply.calls.size(); ++i) {
    json head = calls[i];
    head["function"]["arguments"] = "";
    json args = {{"index", i}, {"function", {{"arguments", reply.calls[i].arguments}}}};
    for (json* part : {&head, &args}) {
      json c = {{"index", index},
                {"delta", {{"tool_calls", json::array({*part})}}},
                {"logprobs", nullptr},
                {"finish_reason", nullptr}};
      exchange_->send(sse(chunk(json::array({std::move(c)}))));
    }
  }
  json last = choice_delta(index, "", {}, finish);
  if (!reply.calls.empty() && finish == FinishReason::Stop) last["finish_reason"] = "tool_calls";
  exchange_->send(sse(chunk(json::array({std::move(last)}))));
}

json Generation::tool_calls_json(const std::vector<ToolCall>& calls, bool streamed) const {
  json out = json::array();
  for (size_t i = 0; i < calls.size(); ++i) {
    json call = {{"id", item_id("call")},
                 {"type", "function"},
                 {"function", {{"name", calls[i].name}, {"arguments", calls[i].arguments}}}};
    if (streamed) call["index"] = i;
    out.push_back(std::move(call));
  }
  return out;
}

CallUsage Generation::call_usage() const {
  CallUsage out;
  for (const auto& p : prompt_states_) {
    out.prompt_tokens += p.prompt_tokens;
    out.cached_tokens += p.cached_tokens;
  }
  for (const auto& c : choices_) out.completion_tokens += c.completion_tokens;
  if (first_token_) out.ttft_seconds = std::chrono::duration<double>(*first_token_ - exchange_->arrived()).count();
  return out;
}

json Generation::totals() const {
  const CallUsage u = call_usage();
  return usage(u.prompt_tokens, u.completion_tokens, u.cached_tokens);
}

json Generation::full_response() {
  json choices = json::array();
  for (size_t i = 0; i < choices_.size(); ++i) {
    Choice& c = choices_[i];
    json entry = {{"index", i}, {"finish_reason", finish_reason(*c.finish)}};
    if (request_.kind == ApiKind::Chat) {
      entry["message"] = {{"role", "assistant"}, {"content", c.text}};
      if (c.splitter) entry["message"]["reasoning_content"] = c.reasoning.empty() ? json(nullptr) : json(c.reasoning);
      if (tools_active()) {
        const ParsedReply reply = parse_tool_calls(request_.tool_format, c.text);
        if (!reply.calls.empty()) {
          entry["message"]["content"] = reply.content.empty() ? json(nullptr) : json(reply.content);
          entry["message"]["tool_calls"] = tool_calls_json(reply.calls, false);
          if (c.finish == FinishReason::Stop) entry["finish_reason"] = "tool_calls";
        }
      }
      entry["logprobs"] = request_.params.logprobs >= 0 ? chat_logprobs(context_.tokenizer, c.logprobs) : json(nullptr);
    } else {
      const std::string& prompt = prompts_[i / static_cast<size_t>(request_.params.n)].text;
      entry["text"] = request_.echo ? prompt + c.text : c.text;
      entry["logprobs"] = request_.params.logprobs >= 0
                              ? completion_logprobs(context_.tokenizer, c.logprobs, c.text_offset)
                              : json(nullptr);
    }
    choices.push_back(std::move(entry));
  }
  json j = {{"id", id_},
            {"object", request_.kind == ApiKind::Chat ? "chat.completion" : "text_completion"},
            {"created", created_},
            {"model", context_.model_name},
            {"choices", std::move(choices)},
            {"usage", totals()}};
  return j;
}

void Generation::complete() {
  const json total = totals();
  context_.metrics.tokens(total["prompt_tokens"].get<int64_t>(), total["completion_tokens"].get<int64_t>());
  int status = 200;
  const auto failed =
      std::find_if(choices_.begin(), choices_.end(), [](const Choice& c) { return c.finish == FinishReason::Error; });
  if (client_gone_) {
    status = 499;  // the client closed the connection (nginx's code)
  } else if (request_.stream) {
    if (request_.include_usage) {
      json last = chunk(json::array());
      last["usage"] = total;
      exchange_->send(sse(last));
    }
    exchange_->send("data: [DONE]\n\n");
    exchange_->end_stream();
  } else if (failed != choices_.end()) {
    status = 500;
    exchange_->respond(http::status::internal_server_error, "application/json",
                       dump(ApiError(500, failed->error, "", "server_error").body()));
  } else {
    exchange_->respond(http::status::ok, "application/json", dump(full_response()));
  }
  if (done_) std::exchange(done_, nullptr)(status, call_usage());
}

}  // namespace nanoserve::server
