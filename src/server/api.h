// The OpenAI-compatible routes: /v1/completions, /v1/chat/completions, /v1/models, /health,
// /metrics, /tokenize, /detokenize and the chat page at /. Errors are answered in OpenAI's shape.
#pragma once

#include <boost/asio/io_context.hpp>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>

#include "engine/engine.h"
#include "server/api_error.h"
#include "server/generation.h"
#include "server/http_server.h"
#include "server/metrics.h"
#include "tokenizer/chat_template.h"

namespace nanoserve::server {

struct ApiOptions {
  std::string model_name;
  std::string api_key;        // empty: no key needed
  int64_t max_queued = 1024;  // calls in flight beyond which new ones get 503
  int64_t kv_tokens = 0;          // tokens the KV pool holds: chat's default max_tokens stays within it
};

class Api {
 public:
  Api(boost::asio::io_context& io, Engine& engine, const Tokenizer& tokenizer, const ChatTemplate* chat_template,
      ApiOptions options);

  void handle(const std::shared_ptr<Exchange>& exchange);

  int64_t in_flight() const { return in_flight_; }
  void drain() { draining_ = true; }  // SIGTERM: new calls get 503, /health reports it

 private:
  void route(const std::shared_ptr<Exchange>& exchange, const std::string& path);
  void generate(const std::shared_ptr<Exchange>& exchange, ApiKind kind);
  std::vector<Prompt> completion_prompts(const nlohmann::ordered_json& prompt) const;
  Prompt chat_prompt(const GenerationRequest& request) const;
  void models(const std::shared_ptr<Exchange>& exchange);
  void tokenize(const std::shared_ptr<Exchange>& exchange);
  void detokenize(const std::shared_ptr<Exchange>& exchange);
  void check_key(const HttpRequest& request) const;
  void answer(const std::shared_ptr<Exchange>& exchange, const std::string& endpoint, http::status status,
              std::string_view content_type, std::string body);
  void answer_error(const std::shared_ptr<Exchange>& exchange, const std::string& endpoint, const ApiError& error);

  boost::asio::io_context& io_;
  Engine& engine_;
  const Tokenizer& tokenizer_;
  const ChatTemplate* chat_template_;
  ApiOptions options_;
  Metrics metrics_;
  int64_t in_flight_ = 0;
  bool draining_ = false;
};

}  // namespace nanoserve::server
