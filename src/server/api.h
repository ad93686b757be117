// The OpenAI-compatible routes: /v1/completions, /v1/chat/completions, /v1/responses (and a
// stored response by id), or /v1/embeddings on an embedding model; /v1/models (and a model by id),
// /health, /metrics, /tokenize, /detokenize and the chat page at /. Errors are answered in OpenAI's shape.
// Routing and bookkeeping run on the io thread; the CPU work of a request (parsing its JSON,
// rendering the chat template, tokenizing) runs on a small pool, so the io thread stays free to
// answer /health and move bytes.
#pragma once

#include <boost/asio/io_context.hpp>
#include <boost/asio/thread_pool.hpp>
#include <functional>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>

#include "engine/engine.h"
#include "grammar/cache.h"
#include "server/api_error.h"
#include "server/embeddings.h"
#include "server/generation.h"
#include "server/http_server.h"
#include "server/metrics.h"
#include "server/response_store.h"
#include "server/responses_request.h"
#include "tokenizer/chat_template.h"

namespace nanoserve::server {

struct ApiOptions {
  std::string model_name;
  std::string api_key;  // empty: no key needed
  // Sequences (prompts x n) in flight, and calls being prepared, beyond which new calls get 503.
  int64_t max_queued = 1024;
  int64_t max_sequences_per_request = 256;  // prompts x n of one call; more is a 400
  int64_t kv_tokens = 0;                    // tokens the KV pool holds: chat's default max_tokens stays within it
  int cpu_threads = 2;                      // the pool that parses, renders and tokenizes
  std::string tool_call_parser;             // hermes, llama3_json, mistral, generic; empty: from the chat template
  std::string reasoning_parser;             // deepseek_r1, qwen3; empty: replies are content only
  // --task embed: /v1/embeddings pools with this, and the generation routes refuse. None: the reverse.
  std::optional<Pooling> embedding;
};

class Api {
 public:
  Api(boost::asio::io_context& io, Engine& engine, const Tokenizer& tokenizer, const ChatTemplate* chat_template,
      ApiOptions options);
  ~Api();

  // The HttpServer's header check: refuses a request without the key before its body is read.
  std::optional<Refusal> admit(const http::request_header<>& header);
  void handle(const std::shared_ptr<Exchange>& exchange);

  // Calls not yet answered: generating, or being prepared on the pool.
  int64_t in_flight() const { return in_flight_calls_ + preparing_; }
  void drain() { draining_ = true; }  // SIGTERM: new calls get 503, /health reports it

 private:
  struct Prepared;            // a generation call parsed and tokenized, ready for the engine
  struct PreparedEmbeddings;  // an embeddings call, likewise
  // Work for the pool: returns what the io thread then does with its result.
  using Continuation = std::function<void()>;
  using Work = std::function<Continuation()>;

  void route(const std::shared_ptr<Exchange>& exchange, const std::string& endpoint);
  // Runs fn; what it throws is the call's answer: an ApiError as it is, an Error (a template that
  // raised, a tokenizer that refused the text) a 400, anything else a 500.
  void answer_failures(const std::shared_ptr<Exchange>& exchange, const std::string& endpoint,
                       const std::function<void()>& fn);
  void off_io(const std::shared_ptr<Exchange>& exchange, const std::string& endpoint, Work work);
  void generate(const std::shared_ptr<Exchange>& exchange, ApiKind kind);
  Prepared prepare(GenerationRequest request) const;
  using CallDone = std::function<void(int status, const CallUsage& usage)>;
  void run_call(const std::shared_ptr<Exchange>& exchange, const std::string& endpoint, int64_t sequences,
                const std::function<void(CallDone)>& start);
  GenerationContext context();
  void start_generation(const std::shared_ptr<Exchange>& exchange, Prepared prepared);
  // POST /v1/embeddings.
  void embed(const std::shared_ptr<Exchange>& exchange);
  PreparedEmbeddings prepare_embeddings(EmbeddingsRequest request) const;
  std::vector<int32_t> input_ids(const nlohmann::ordered_json& input, const std::string& where) const;
  // Token ids of a request, checked against the vocabulary; an error names `where` and `field`.
  std::vector<int32_t> token_ids(const nlohmann::ordered_json& ids, const std::string& where,
                                 const std::string& field) const;
  // A new call, before its body is parsed: refused while draining (503), on a route of the other
  // task (a 400 that says how to serve it), or when the queue is full (503).
  void accept_call(bool embeddings) const;
  void check_model(const std::string& id) const;  // a 404 unless empty or the served model's
  // POST /v1/responses, and GET or DELETE of a stored one.
  void respond(const std::shared_ptr<Exchange>& exchange);
  void start_response(const std::shared_ptr<Exchange>& exchange, ResponsesRequest meta, Prepared prepared);
  void stored_response(const std::shared_ptr<Exchange>& exchange, const std::string& id, bool erase);
  std::vector<Prompt> completion_prompts(const nlohmann::ordered_json& prompt) const;
  Prompt chat_prompt(const GenerationRequest& request) const;
  // params.grammar from the request's output constraint or enforced tool choice (compiled once per
  // distinct schema); throws ApiError (400) naming what cannot be compiled.
  void attach_grammar(GenerationRequest& request) const;
  nlohmann::json model_card() const;
  void models(const std::shared_ptr<Exchange>& exchange);
  void model(const std::shared_ptr<Exchange>& exchange, const std::string& id);
  // On the pool; the continuation answers.
  Continuation tokenize(const std::shared_ptr<Exchange>& exchange);
  Continuation detokenize(const std::shared_ptr<Exchange>& exchange);
  ApiError overloaded() const;  // 503: the queue is full
  bool key_matches(std::string_view authorization) const;
  void check_key(const HttpRequest& request) const;
  // Every answered request ends here: counted for /metrics and logged.
  void finished(const std::shared_ptr<Exchange>& exchange, const std::string& endpoint, int status,
                const std::optional<CallUsage>& usage = std::nullopt);
  void answer(const std::shared_ptr<Exchange>& exchange, const std::string& endpoint, http::status status,
              std::string_view content_type, std::string body);
  void answer_error(const std::shared_ptr<Exchange>& exchange, const std::string& endpoint, const ApiError& error);

  boost::asio::io_context& io_;
  Engine& engine_;
  const Tokenizer& tokenizer_;
  const ChatTemplate* chat_template_;
  ApiOptions options_;
  ToolCallFormat tool_format_;
  std::optional<ReasoningFormat> reasoning_;
  mutable grammar::GrammarCache grammars_;
  Metrics metrics_;
  ResponseStore responses_;
  int64_t in_flight_calls_ = 0, in_flight_sequences_ = 0;
  int64_t preparing_ = 0;  // calls on the pool
  bool draining_ = false;
  int64_t created_;               // when the server started, as the model's "created" (Unix seconds)
  boost::asio::thread_pool cpu_;  // last: stopped and joined first, before what its work uses is gone
};

}  // namespace nanoserve::server
