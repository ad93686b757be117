#include "server/api.h"

#include <fmt/format.h>
#include <fmt/ranges.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>

#include <algorithm>
#include <array>
#include <boost/asio/post.hpp>
#include <boost/beast/core/string.hpp>

#include "server/api_error.h"
#include "server/chat_page.h"
#include "server/openai_response.h"
#include "server/response_call.h"
#include "tokenizer/chat_prompt.h"
#include "util/error.h"
#include "util/json_parse.h"

namespace nanoserve::server {

using json = nlohmann::json;

namespace {

std::string sha256(std::string_view text) {
  unsigned char digest[EVP_MAX_MD_SIZE];
  unsigned int length = 0;
  EVP_Digest(text.data(), text.size(), digest, &length, EVP_sha256(), nullptr);
  return std::string(reinterpret_cast<const char*>(digest), length);
}

nlohmann::ordered_json parse_body(const HttpRequest& request) { return parse_request_body(request.body()); }

// The routes, as /metrics labels them: any other path is "other", so that strangers' paths cannot
// grow the metrics or break their format.
const std::array<std::string_view, 11> kRoutes = {"/",           "/index.html",          "/health",        "/metrics",
                                                  "/v1/models",  "/v1/completions",      "/v1/embeddings", "/tokenize",
                                                  "/detokenize", "/v1/chat/completions", "/v1/responses"};
constexpr std::string_view kModelPrefix = "/v1/models/";        // GET /v1/models/{id}
constexpr std::string_view kResponsePrefix = "/v1/responses/";  // GET and DELETE /v1/responses/{id}

std::string_view target_of(const http::request_header<>& header) {
  return {header.target().data(), header.target().size()};
}

std::string endpoint_of(std::string_view target) {
  const std::string_view path = target.substr(0, target.find('?'));
  for (std::string_view route : kRoutes) {
    if (path == route) return std::string(route);
  }
  for (auto [prefix, route] :
       {std::pair{kModelPrefix, "/v1/models/{id}"}, std::pair{kResponsePrefix, "/v1/responses/{id}"}}) {
    if (path.size() > prefix.size() && path.substr(0, prefix.size()) == prefix) return route;
  }
  return "other";
}

bool needs_key(std::string_view target) {
  target = target.substr(0, target.find('?'));
  return target.rfind("/v1/", 0) == 0 || target == "/tokenize" || target == "/detokenize";
}

ApiError shutting_down() { return ApiError(503, "the server is shutting down", "", "server_error"); }

ApiError key_error() {
  return ApiError(401, "invalid or missing API key: send it as 'Authorization: Bearer KEY'", "",
                  "invalid_request_error", "invalid_api_key");
}

// --tool-call-parser, or what the chat template writes calls with.
ToolCallFormat choose_tool_format(const std::string& parser, const ChatTemplate* chat_template) {
  if (!parser.empty()) {
    if (auto format = tool_call_format_named(parser)) return *format;
    fail("--tool-call-parser: unknown parser '{}' (hermes, llama3_json, mistral, generic)", parser);
  }
  return chat_template ? detect_tool_call_format(chat_template->source()) : ToolCallFormat::Generic;
}

std::optional<ReasoningFormat> choose_reasoning_format(const std::string& parser) {
  if (parser.empty()) return std::nullopt;
  if (auto format = reasoning_format_named(parser)) return format;
  fail("--reasoning-parser: unknown parser '{}' (deepseek_r1, qwen3)", parser);
}

}  // namespace

// A generation call, parsed and tokenized on the pool.
struct Api::Prepared {
  ApiKind kind;
  GenerationRequest request;
  std::vector<Prompt> prompts;
};

struct Api::PreparedEmbeddings {
  std::vector<std::vector<int32_t>> inputs;
  EmbeddingCall::Settings settings;
};

Api::Api(boost::asio::io_context& io, Engine& engine, const Tokenizer& tokenizer, const ChatTemplate* chat_template,
         ApiOptions options)
    : io_(io),
      engine_(engine),
      tokenizer_(tokenizer),
      chat_template_(chat_template),
      options_(std::move(options)),
      tool_format_(choose_tool_format(options_.tool_call_parser, chat_template)),
      reasoning_(choose_reasoning_format(options_.reasoning_parser)),
      metrics_(options_.model_name),
      created_(unix_time()),
      cpu_(static_cast<size_t>(std::max(1, options_.cpu_threads))) {}

// The io loop has ended: what is still queued on the pool could not answer anyone. Work under way
// finishes (a render ends within its budget), the rest is dropped.
Api::~Api() {
  cpu_.stop();
  cpu_.join();
}

void Api::finished(const std::shared_ptr<Exchange>& exchange, const std::string& endpoint, int status,
                   const std::optional<CallUsage>& usage) {
  metrics_.request_finished(endpoint, status);
  const auto& request = exchange->request();
  log_request(std::string_view(request.method_string().data(), request.method_string().size()), target_of(request),
              status, std::chrono::duration<double>(std::chrono::steady_clock::now() - exchange->arrived()).count(),
              usage);
}

void Api::answer(const std::shared_ptr<Exchange>& exchange, const std::string& endpoint, http::status status,
                 std::string_view content_type, std::string body) {
  finished(exchange, endpoint, static_cast<int>(status));
  exchange->respond(status, content_type, std::move(body));
}

std::optional<Refusal> Api::admit(const http::request_header<>& header) {
  if (options_.api_key.empty() || !needs_key(target_of(header))) return std::nullopt;
  const auto authorization = header[http::field::authorization];
  if (key_matches(std::string_view(authorization.data(), authorization.size()))) return std::nullopt;
  metrics_.request_finished(endpoint_of(target_of(header)), 401);
  log_request(std::string_view(header.method_string().data(), header.method_string().size()), target_of(header), 401, 0,
              std::nullopt);
  return Refusal{http::status::unauthorized, dump(key_error().body()), {{"WWW-Authenticate", "Bearer"}}};
}

void Api::handle(const std::shared_ptr<Exchange>& exchange) {
  const std::string endpoint = endpoint_of(target_of(exchange->request()));
  answer_failures(exchange, endpoint, [&] { route(exchange, endpoint); });
}

void Api::answer_failures(const std::shared_ptr<Exchange>& exchange, const std::string& endpoint,
                          const std::function<void()>& fn) {
  try {
    fn();
  } catch (const ApiError& e) {
    answer_error(exchange, endpoint, e);
  } catch (const Error& e) {  // a template that raised, a tokenizer that refused the text, ...
    answer_error(exchange, endpoint, ApiError(400, e.what()));
  } catch (const std::exception& e) {
    answer_error(exchange, endpoint, ApiError(500, fmt::format("internal error: {}", e.what()), "", "server_error"));
  }
}

void Api::answer_error(const std::shared_ptr<Exchange>& exchange, const std::string& endpoint, const ApiError& e) {
  std::vector<std::pair<std::string, std::string>> headers;
  if (e.status == 503) headers.emplace_back("Retry-After", "1");
  if (e.status == 401) headers.emplace_back("WWW-Authenticate", "Bearer");
  finished(exchange, endpoint, e.status);
  exchange->respond(static_cast<http::status>(e.status), "application/json", dump(e.body()), headers);
}

// Runs `work` on the pool and what it returns on the io thread; an exception in either is the
// call's answer, as in handle().
void Api::off_io(const std::shared_ptr<Exchange>& exchange, const std::string& endpoint, Work work) {
  auto on_io = [this, exchange, endpoint](Continuation then) {
    boost::asio::post(io_, [this, exchange, endpoint, then = std::move(then)] {
      --preparing_;
      answer_failures(exchange, endpoint, then);
    });
  };
  ++preparing_;
  boost::asio::post(cpu_, [work = std::move(work), on_io] {
    std::exception_ptr error;
    Continuation then;
    try {
      then = work();
    } catch (...) {
      error = std::current_exception();
    }
    if (error) then = [error] { std::rethrow_exception(error); };
    on_io(std::move(then));
  });
}

void Api::route(const std::shared_ptr<Exchange>& exchange, const std::string& endpoint) {
  const HttpRequest& request = exchange->request();
  const auto method = request.method();
  const std::string path =
      endpoint == "other" ? std::string(request.target().substr(0, request.target().find('?'))) : endpoint;
  auto expect = [&](http::verb verb) {
    if (method != verb) {
      throw ApiError(405, fmt::format("{} {}: method not allowed (use {})", std::string(request.method_string()), path,
                                      std::string(http::to_string(verb))));
    }
  };
  if (path == "/" || path == "/index.html") {
    expect(http::verb::get);
    return answer(exchange, endpoint, http::status::ok, "text/html; charset=utf-8", std::string(chat_page_html()));
  }
  if (path == "/health") {
    expect(http::verb::get);
    if (draining_) throw shutting_down();
    return answer(exchange, endpoint, http::status::ok, "application/json", "{}");
  }
  if (path == "/metrics") {
    expect(http::verb::get);
    return answer(exchange, endpoint, http::status::ok, "text/plain; version=0.0.4", metrics_.render(engine_.stats()));
  }
  const auto no_route = [&] {
    return ApiError(404, fmt::format("no route for {} {}", std::string(request.method_string()), path.substr(0, 200)),
                    "", "invalid_request_error", "not_found");
  };
  if (!needs_key(path)) throw no_route();
  check_key(request);  // admit() refused a missing key already, when the server calls it
  if (path == "/v1/models") {
    expect(http::verb::get);
    return models(exchange);
  }
  if (endpoint == "/v1/models/{id}") {
    expect(http::verb::get);
    std::string_view target(request.target().data(), request.target().size());
    return model(exchange, percent_decode(target.substr(kModelPrefix.size(), target.find('?') - kModelPrefix.size())));
  }
  if (path == "/v1/completions" || path == "/v1/chat/completions") {
    expect(http::verb::post);
    return generate(exchange, path == "/v1/completions" ? ApiKind::Completion : ApiKind::Chat);
  }
  if (path == "/v1/responses") {
    expect(http::verb::post);
    return respond(exchange);
  }
  if (path == "/v1/embeddings") {
    expect(http::verb::post);
    return embed(exchange);
  }
  if (endpoint == "/v1/responses/{id}") {
    if (method != http::verb::delete_) expect(http::verb::get);
    std::string_view target(request.target().data(), request.target().size());
    return stored_response(
        exchange, percent_decode(target.substr(kResponsePrefix.size(), target.find('?') - kResponsePrefix.size())),
        method == http::verb::delete_);
  }
  if (path == "/tokenize" || path == "/detokenize") {
    expect(http::verb::post);
    if (preparing_ >= options_.max_queued) {
      throw ApiError(503, "the server is at capacity; retry later", "", "server_error", "overloaded");
    }
    const bool encode = path == "/tokenize";
    return off_io(exchange, endpoint,
                  [this, exchange, encode] { return encode ? tokenize(exchange) : detokenize(exchange); });
  }
  throw no_route();
}

ApiError Api::overloaded() const {
  return ApiError(503,
                  fmt::format("the server is at capacity ({} sequences in flight); retry later", in_flight_sequences_),
                  "", "server_error", "overloaded");
}

bool Api::key_matches(std::string_view authorization) const {
  // "Bearer KEY"; the scheme is case-insensitive (RFC 7235).
  constexpr std::string_view scheme = "bearer ";
  const bool bearer =
      authorization.size() > scheme.size() && boost::beast::iequals(authorization.substr(0, scheme.size()), scheme);
  const std::string given = bearer ? std::string(authorization.substr(scheme.size())) : std::string();
  // Compares digests in constant time, so the time taken says nothing about the key.
  const std::string a = sha256(given), b = sha256(options_.api_key);
  return !given.empty() && CRYPTO_memcmp(a.data(), b.data(), a.size()) == 0;
}

void Api::check_key(const HttpRequest& request) const {
  if (options_.api_key.empty()) return;
  const auto header = request[http::field::authorization];
  if (!key_matches(std::string_view(header.data(), header.size()))) throw key_error();
}

// The served model as OpenAI lists it, with vLLM's additions (root, parent, max_model_len).
json Api::model_card() const {
  return {{"id", options_.model_name},
          {"object", "model"},
          {"created", created_},
          {"owned_by", "nanoserve"},
          {"root", options_.model_name},
          {"parent", nullptr},
          {"max_model_len", engine_.max_model_len()}};
}

void Api::models(const std::shared_ptr<Exchange>& exchange) {
  answer(exchange, "/v1/models", http::status::ok, "application/json",
         dump({{"object", "list"}, {"data", json::array({model_card()})}}));
}

void Api::check_model(const std::string& id) const {
  if (id.empty() || id == options_.model_name) return;
  throw ApiError(
      404,
      fmt::format("the model '{}' does not exist; this server serves '{}'", id.substr(0, 200), options_.model_name),
      "model", "invalid_request_error", "model_not_found");
}

void Api::model(const std::shared_ptr<Exchange>& exchange, const std::string& id) {
  check_model(id);
  answer(exchange, "/v1/models/{id}", http::status::ok, "application/json", dump(model_card()));
}

std::vector<Prompt> Api::completion_prompts(const nlohmann::ordered_json& prompt) const {
  auto from_ids = [&](const nlohmann::ordered_json& ids) {
    Prompt p;
    p.ids = token_ids(ids, "prompt: ", "prompt");
    p.text = tokenizer_.decode(p.ids, /*skip_special=*/false);
    return p;
  };
  auto from_text = [&](const std::string& text) { return Prompt{tokenizer_.encode(text), text}; };
  std::vector<Prompt> prompts;
  if (prompt.is_string()) {
    prompts.push_back(from_text(prompt.get<std::string>()));
  } else if (prompt[0].is_number_integer()) {
    prompts.push_back(from_ids(prompt));
  } else {
    for (const auto& p : prompt) prompts.push_back(p.is_string() ? from_text(p.get<std::string>()) : from_ids(p));
  }
  return prompts;
}

Prompt Api::chat_prompt(const GenerationRequest& request) const {
  if (!chat_template_) {
    throw ApiError(400, "this model has no chat template; use /v1/completions", "messages");
  }
  ChatPrompt prompt =
      encode_chat(*chat_template_, tokenizer_, chat_template_context(request), request.parse_special_tokens);
  return Prompt{std::move(prompt.ids), std::move(prompt.text)};
}

void Api::accept_call(bool embeddings) const {
  if (draining_) throw shutting_down();
  if (embeddings && !options_.embedding) {
    throw ApiError(
        400,
        fmt::format("this server runs '{}' for generation; to serve embeddings start it with `--task embed` "
                    "(as vLLM's --task embed: last-token pooling, normalized, unless the model's modules.json "
                    "says otherwise)",
                    options_.model_name),
        "model");
  }
  if (!embeddings && options_.embedding) {
    throw ApiError(400,
                   fmt::format("this server runs '{}' for embeddings (--task embed): use POST /v1/embeddings",
                               options_.model_name),
                   "model");
  }
  if (in_flight_sequences_ + preparing_ >= options_.max_queued) throw overloaded();
}

void Api::embed(const std::shared_ptr<Exchange>& exchange) {
  accept_call(true);
  off_io(exchange, "/v1/embeddings", [this, exchange] {
    auto prepared = std::make_shared<PreparedEmbeddings>(
        prepare_embeddings(parse_embeddings_request(parse_body(exchange->request()))));
    return [this, exchange, prepared] {
      run_call(exchange, "/v1/embeddings", static_cast<int64_t>(prepared->inputs.size()), [&](CallDone done) {
        EmbeddingCall::start(io_, engine_, metrics_, exchange, std::move(prepared->inputs),
                             std::move(prepared->settings), std::move(done));
      });
    };
  });
}

std::vector<int32_t> Api::token_ids(const nlohmann::ordered_json& ids, const std::string& where,
                                    const std::string& field) const {
  std::vector<int32_t> out;
  for (const auto& id : ids) {
    const int64_t v = id.get<int64_t>();
    if (v < 0 || v >= engine_.config().vocab_size) {
      throw ApiError(
          400, fmt::format("{}token id {} is outside the vocabulary of {}", where, v, engine_.config().vocab_size),
          field);
    }
    out.push_back(static_cast<int32_t>(v));
  }
  return out;
}

std::vector<int32_t> Api::input_ids(const nlohmann::ordered_json& input, const std::string& where) const {
  std::vector<int32_t> ids;
  if (input.is_string()) {
    ids = tokenizer_.encode(input.get<std::string>());  // with the special tokens the model's post-processor adds
  } else {
    ids = token_ids(input, where, "input");
  }
  if (static_cast<int64_t>(ids.size()) > engine_.max_model_len()) {
    throw ApiError(
        400,
        fmt::format("{}{} tokens, more than the model's context of {}", where, ids.size(), engine_.max_model_len()),
        "input", "invalid_request_error", "context_length_exceeded");
  }
  return ids;
}

// On the pool: the request checked against the model, and its inputs tokenized.
Api::PreparedEmbeddings Api::prepare_embeddings(EmbeddingsRequest request) const {
  check_model(request.model);
  const ModelConfig& c = engine_.config();
  if (request.dimensions) {
    const int64_t d = *request.dimensions;
    if (!c.matryoshka) {
      throw ApiError(
          400,
          "dimensions: this model's vectors cannot be shortened (its config.json sets neither is_matryoshka nor "
          "matryoshka_dimensions)",
          "dimensions");
    }
    const auto& allowed = c.matryoshka_dimensions;
    if (d > c.hidden_size || (!allowed.empty() && std::find(allowed.begin(), allowed.end(), d) == allowed.end())) {
      throw ApiError(400,
                     allowed.empty() ? fmt::format("dimensions: {} is more than the model's {}", d, c.hidden_size)
                                     : fmt::format("dimensions: {} is not one of the model's widths ({})", d,
                                                   fmt::join(allowed, ", ")),
                     "dimensions");
    }
  }
  PreparedEmbeddings prepared{{}, {*options_.embedding, request.dimensions, request.base64, options_.model_name}};
  const auto& input = request.input;
  if (input.is_string() || input[0].is_number_integer()) {
    prepared.inputs.push_back(input_ids(input, ""));
  } else {
    for (size_t i = 0; i < input.size(); ++i)
      prepared.inputs.push_back(input_ids(input[i], fmt::format("input[{}]: ", i)));
  }
  return prepared;
}

void Api::generate(const std::shared_ptr<Exchange>& exchange, ApiKind kind) {
  accept_call(false);
  const std::string endpoint = kind == ApiKind::Chat ? "/v1/chat/completions" : "/v1/completions";
  off_io(exchange, endpoint, [this, exchange, kind] {
    auto prepared =
        std::make_shared<Prepared>(prepare(parse_generation_request(parse_body(exchange->request()), kind)));
    return [this, exchange, prepared] { start_generation(exchange, std::move(*prepared)); };
  });
}

void Api::respond(const std::shared_ptr<Exchange>& exchange) {
  accept_call(false);
  off_io(exchange, "/v1/responses", [this, exchange] {
    auto meta = std::make_shared<ResponsesRequest>(
        parse_responses_request(parse_body(exchange->request()), [this](const std::string& id) {
          auto stored = responses_.get(id);
          return stored ? std::optional<nlohmann::ordered_json>(std::move(stored->conversation)) : std::nullopt;
        }));
    auto prepared = std::make_shared<Prepared>(prepare(parse_generation_request(meta->chat, ApiKind::Chat)));
    return [this, exchange, meta, prepared] { start_response(exchange, std::move(*meta), std::move(*prepared)); };
  });
}

void Api::stored_response(const std::shared_ptr<Exchange>& exchange, const std::string& id, bool erase) {
  const auto not_found = [&] {
    return ApiError(404, fmt::format("no stored response '{}'", id.substr(0, 200)), "response_id",
                    "invalid_request_error", "response_not_found");
  };
  if (erase) {
    if (!responses_.erase(id)) throw not_found();
    return answer(exchange, "/v1/responses/{id}", http::status::ok, "application/json",
                  dump({{"id", id}, {"object", "response"}, {"deleted", true}}));
  }
  auto stored = responses_.get(id);
  if (!stored) throw not_found();
  answer(exchange, "/v1/responses/{id}", http::status::ok, "application/json", dump(stored->response));
}

// On the pool: everything a call needs before the engine, checked in the order that costs least
// first (the number of sequences before any prompt is tokenized).
Api::Prepared Api::prepare(GenerationRequest request) const {
  const ApiKind kind = request.kind;
  check_model(request.model);
  try {
    request.params.validate(engine_.sample_vocab());
  } catch (const Error& e) {
    throw ApiError(400, e.what());
  }
  const int64_t prompt_count =
      kind == ApiKind::Chat || request.prompt.is_string() || request.prompt[0].is_number_integer()
          ? 1
          : static_cast<int64_t>(request.prompt.size());
  if (prompt_count * request.params.n > options_.max_sequences_per_request) {
    throw ApiError(
        400,
        fmt::format("{} prompts x n={} is {} sequences, more than the {} one request may ask for", prompt_count,
                    request.params.n, prompt_count * request.params.n, options_.max_sequences_per_request),
        "n");
  }
  std::vector<Prompt> prompts =
      kind == ApiKind::Chat ? std::vector<Prompt>{chat_prompt(request)} : completion_prompts(request.prompt);
  const int64_t max_prompt_tokens = engine_.max_model_len() - 1;  // room for one generated token
  for (const Prompt& p : prompts) {
    const auto length = static_cast<int64_t>(p.ids.size());
    if (length > max_prompt_tokens) {
      throw ApiError(400,
                     fmt::format("the prompt is {} tokens, more than the {} this model's context leaves for it", length,
                                 max_prompt_tokens),
                     kind == ApiKind::Chat ? "messages" : "prompt", "invalid_request_error", "context_length_exceeded");
    }
    if (kind == ApiKind::Chat && !request.max_tokens_given) {
      // The rest of the context, as vLLM does, but no more than the KV pool can ever hold.
      const int64_t room = std::min(engine_.max_model_len(), options_.kv_tokens) - length;
      request.params.max_tokens = static_cast<int32_t>(std::max<int64_t>(1, room));
    }
  }
  attach_grammar(request);
  return Prepared{kind, std::move(request), std::move(prompts)};
}

void Api::attach_grammar(GenerationRequest& request) const {
  request.tool_format = tool_format_;
  // tool_choice auto: free text, and a call held to the functions' schemas once it begins (in the
  // formats where a call has an opening tag).
  const bool lazy = request.tools.active() && !request.tools.enforced() && !call_trigger(tool_format_).empty() &&
                    request.constraint.kind == OutputConstraint::Kind::None;
  if (lazy) request.params.grammar_trigger = std::string(call_trigger(tool_format_));
  const bool tools = request.tools.enforced() || lazy;
  if (!tools && request.constraint.kind == OutputConstraint::Kind::None) return;
  const std::string field = tools ? "tool_choice" : request.constraint.field;
  try {
    request.params.grammar =
        tools ? grammars_.get(tool_grammar_key(request.tools, tool_format_),
                              [&] { return tool_grammar(request.tools, tool_format_); })
              : grammars_.get(request.constraint.cache_key(), [&] { return request.constraint.compile(); });
  } catch (const ApiError&) {
    throw;
  } catch (const Error& e) {
    throw ApiError(400, fmt::format("{}: {}", field, e.what()), field);
  }
}

// Back on the io thread: the queue is checked again (other calls may have started meanwhile), and
// a client that left while its prompt was prepared costs nothing more. `start` is handed the
// callback that ends the call's bookkeeping.
void Api::run_call(const std::shared_ptr<Exchange>& exchange, const std::string& endpoint, int64_t sequences,
                   const std::function<void(CallDone)>& start) {
  if (exchange->closed()) return finished(exchange, endpoint, 499);
  if (draining_) throw shutting_down();
  if (in_flight_sequences_ > 0 && in_flight_sequences_ + sequences > options_.max_queued) throw overloaded();
  ++in_flight_calls_;
  in_flight_sequences_ += sequences;
  try {
    start([this, exchange, endpoint, sequences](int status, const CallUsage& usage) {
      --in_flight_calls_;
      in_flight_sequences_ -= sequences;
      finished(exchange, endpoint, status, usage);
    });
  } catch (...) {
    --in_flight_calls_;
    in_flight_sequences_ -= sequences;
    throw;
  }
}

void Api::start_generation(const std::shared_ptr<Exchange>& exchange, Prepared prepared) {
  const std::string endpoint = prepared.kind == ApiKind::Chat ? "/v1/chat/completions" : "/v1/completions";
  const int64_t sequences = static_cast<int64_t>(prepared.prompts.size()) * prepared.request.params.n;
  run_call(exchange, endpoint, sequences, [&](CallDone done) {
    Generation::start(context(), exchange, std::move(prepared.request), std::move(prepared.prompts), std::move(done));
  });
}

void Api::start_response(const std::shared_ptr<Exchange>& exchange, ResponsesRequest meta, Prepared prepared) {
  run_call(exchange, "/v1/responses", 1, [&](CallDone done) {
    ResponseCall::start(context(), responses_, exchange, std::move(meta), std::move(prepared.request),
                        std::move(prepared.prompts.at(0)), std::move(done));
  });
}

GenerationContext Api::context() { return {io_, engine_, tokenizer_, metrics_, options_.model_name, reasoning_}; }

Api::Continuation Api::tokenize(const std::shared_ptr<Exchange>& exchange) {
  const auto body = parse_body(exchange->request());
  std::vector<int32_t> ids;
  if (body.contains("messages")) {
    GenerationRequest request = parse_generation_request(body, ApiKind::Chat);
    ids = chat_prompt(request).ids;
  } else {
    auto prompt = body.find("prompt");
    if (prompt == body.end() || !prompt->is_string())
      throw ApiError(400, "prompt: required string (or messages)", "prompt");
    auto add = body.find("add_special_tokens");
    if (add != body.end() && !add->is_boolean())
      throw ApiError(400, "add_special_tokens: expected a boolean", "add_special_tokens");
    ids = tokenizer_.encode(prompt->get<std::string>(), add == body.end() || add->get<bool>());
  }
  const json out = {{"tokens", ids}, {"count", ids.size()}, {"max_model_len", engine_.max_model_len()}};
  auto text = std::make_shared<std::string>(dump(out));
  return
      [this, exchange, text] { answer(exchange, "/tokenize", http::status::ok, "application/json", std::move(*text)); };
}

Api::Continuation Api::detokenize(const std::shared_ptr<Exchange>& exchange) {
  const auto body = parse_body(exchange->request());
  auto tokens = body.find("tokens");
  if (tokens == body.end() || !tokens->is_array()) throw ApiError(400, "tokens: required array of token ids", "tokens");
  std::vector<int32_t> ids;
  for (const auto& t : *tokens) {
    if (!t.is_number_integer() || t.get<int64_t>() < 0 || t.get<int64_t>() >= tokenizer_.vocab_size()) {
      throw ApiError(400,
                     fmt::format("tokens: {} is not a token id of this vocabulary ({} tokens)", json_excerpt(t),
                                 tokenizer_.vocab_size()),
                     "tokens");
    }
    ids.push_back(t.get<int32_t>());
  }
  auto text = std::make_shared<std::string>(dump({{"prompt", tokenizer_.decode(ids, /*skip_special=*/false)}}));
  return [this, exchange, text] {
    answer(exchange, "/detokenize", http::status::ok, "application/json", std::move(*text));
  };
}

}  // namespace nanoserve::server
