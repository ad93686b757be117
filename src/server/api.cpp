#include "server/api.h"

#include <fmt/format.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>

#include "server/api_error.h"
#include "server/chat_page.h"
#include "server/openai_response.h"
#include "tokenizer/chat_prompt.h"
#include "util/error.h"

namespace nanoserve::server {

using json = nlohmann::json;

namespace {

std::string sha256(std::string_view text) {
  unsigned char digest[EVP_MAX_MD_SIZE];
  unsigned int length = 0;
  EVP_Digest(text.data(), text.size(), digest, &length, EVP_sha256(), nullptr);
  return std::string(reinterpret_cast<const char*>(digest), length);
}

// Ordered, so that messages and tools reach the chat template as the client wrote them.
nlohmann::ordered_json parse_body(const HttpRequest& request) {
  auto body = nlohmann::ordered_json::parse(request.body(), nullptr, /*allow_exceptions=*/false);
  if (body.is_discarded()) throw ApiError(400, "the request body is not valid JSON");
  if (!body.is_object()) throw ApiError(400, "the request body must be a JSON object");
  return body;
}

}  // namespace

Api::Api(boost::asio::io_context& io, Engine& engine, const Tokenizer& tokenizer, const ChatTemplate* chat_template,
         ApiOptions options)
    : io_(io), engine_(engine), tokenizer_(tokenizer), chat_template_(chat_template), options_(std::move(options)) {}

void Api::answer(const std::shared_ptr<Exchange>& exchange, const std::string& endpoint, http::status status,
                 std::string_view content_type, std::string body) {
  metrics_.request_finished(endpoint, static_cast<int>(status));
  exchange->respond(status, content_type, std::move(body));
}

void Api::handle(const std::shared_ptr<Exchange>& exchange) {
  const HttpRequest& request = exchange->request();
  std::string path(request.target());
  path = path.substr(0, path.find('?'));
  try {
    route(exchange, path);
  } catch (const ApiError& e) {
    answer_error(exchange, path, e);
  } catch (const Error& e) {  // a template that raised, a tokenizer that refused the text, ...
    answer_error(exchange, path, ApiError(400, e.what()));
  } catch (const std::exception& e) {
    answer_error(exchange, path, ApiError(500, fmt::format("internal error: {}", e.what()), "", "server_error"));
  }
}

void Api::answer_error(const std::shared_ptr<Exchange>& exchange, const std::string& endpoint, const ApiError& e) {
  std::vector<std::pair<std::string, std::string>> headers;
  if (e.status == 503) headers.emplace_back("Retry-After", "1");
  if (e.status == 401) headers.emplace_back("WWW-Authenticate", "Bearer");
  metrics_.request_finished(endpoint, e.status);
  exchange->respond(static_cast<http::status>(e.status), "application/json", dump(e.body()), headers);
}

void Api::route(const std::shared_ptr<Exchange>& exchange, const std::string& path) {
  const HttpRequest& request = exchange->request();
  const auto method = request.method();
  auto expect = [&](http::verb verb) {
    if (method != verb) {
      throw ApiError(405, fmt::format("{} {}: method not allowed (use {})", std::string(request.method_string()), path,
                                      std::string(http::to_string(verb))));
    }
  };
  if (path == "/" || path == "/index.html") {
    expect(http::verb::get);
    return answer(exchange, path, http::status::ok, "text/html; charset=utf-8", std::string(chat_page_html()));
  }
  if (path == "/health") {
    expect(http::verb::get);
    if (draining_) throw ApiError(503, "the server is shutting down", "", "server_error");
    return answer(exchange, path, http::status::ok, "application/json", "{}");
  }
  if (path == "/metrics") {
    expect(http::verb::get);
    return answer(exchange, path, http::status::ok, "text/plain; version=0.0.4", metrics_.render(engine_.stats()));
  }
  const bool api = path.rfind("/v1/", 0) == 0 || path == "/tokenize" || path == "/detokenize";
  if (!api) throw ApiError(404, fmt::format("no route for {} {}", std::string(request.method_string()), path), "", "invalid_request_error", "not_found");
  check_key(request);
  if (path == "/v1/models") {
    expect(http::verb::get);
    return models(exchange);
  }
  if (path == "/v1/completions" || path == "/v1/chat/completions") {
    expect(http::verb::post);
    return generate(exchange, path == "/v1/completions" ? ApiKind::Completion : ApiKind::Chat);
  }
  if (path == "/tokenize") {
    expect(http::verb::post);
    return tokenize(exchange);
  }
  if (path == "/detokenize") {
    expect(http::verb::post);
    return detokenize(exchange);
  }
  throw ApiError(404, fmt::format("no route for {} {}", std::string(request.method_string()), path), "", "invalid_request_error", "not_found");
}

// Compares digests in constant time, so the time taken says nothing about the key.
void Api::check_key(const HttpRequest& request) const {
  if (options_.api_key.empty()) return;
  const auto header = request[http::field::authorization];
  const std::string_view prefix = "Bearer ";
  const std::string given = header.size() > prefix.size() && header.substr(0, prefix.size()) == prefix
                                ? std::string(header.substr(prefix.size()))
                                : std::string();
  const std::string a = sha256(given), b = sha256(options_.api_key);
  if (given.empty() || CRYPTO_memcmp(a.data(), b.data(), a.size()) != 0) {
    throw ApiError(401, "invalid or missing API key: send it as 'Authorization: Bearer KEY'", "", "invalid_request_error",
                   "invalid_api_key");
  }
}

void Api::models(const std::shared_ptr<Exchange>& exchange) {
  const json model = {{"id", options_.model_name},
                      {"object", "model"},
                      {"created", 0},
                      {"owned_by", "nanoserve"},
                      {"max_model_len", engine_.config().max_positions}};
  answer(exchange, "/v1/models", http::status::ok, "application/json", dump({{"object", "list"}, {"data", json::array({model})}}));
}

std::vector<Prompt> Api::completion_prompts(const nlohmann::ordered_json& prompt) const {
  auto from_ids = [&](const json& ids) {
    Prompt p;
    for (const auto& id : ids) {
      const int64_t v = id.get<int64_t>();
      if (v < 0 || v >= engine_.config().vocab_size) {
        throw ApiError(400, fmt::format("prompt: token id {} is outside the vocabulary of {}", v, engine_.config().vocab_size), "prompt");
      }
      p.ids.push_back(static_cast<int32_t>(v));
    }
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
    throw ApiError(400, "this model has no chat template; use /v1/completions",
                   "messages");
  }
  ChatPrompt prompt = encode_chat(*chat_template_, tokenizer_, chat_template_context(request), request.parse_special_tokens);
  return Prompt{std::move(prompt.ids), std::move(prompt.text)};
}

void Api::generate(const std::shared_ptr<Exchange>& exchange, ApiKind kind) {
  if (draining_) throw ApiError(503, "the server is shutting down", "", "server_error");
  if (in_flight_ >= options_.max_queued) {
    throw ApiError(503, fmt::format("the server is at capacity ({} requests in flight); retry later", in_flight_), "",
                   "server_error", "overloaded");
  }
  GenerationRequest request = parse_generation_request(parse_body(exchange->request()), kind);
  if (!request.model.empty() && request.model != options_.model_name) {
    throw ApiError(404, fmt::format("the model '{}' does not exist; this server serves '{}'", request.model, options_.model_name),
                   "model", "invalid_request_error", "model_not_found");
  }
  std::vector<Prompt> prompts = kind == ApiKind::Chat ? std::vector<Prompt>{chat_prompt(request)}
                                                      : completion_prompts(request.prompt);
  const int64_t max_prompt_tokens = engine_.config().max_positions - 1;  // room for one generated token
  for (const Prompt& p : prompts) {
    const auto length = static_cast<int64_t>(p.ids.size());
    if (length > max_prompt_tokens) {
      throw ApiError(400, fmt::format("the prompt is {} tokens, more than the {} this model's context leaves for it", length,
                                      max_prompt_tokens),
                     kind == ApiKind::Chat ? "messages" : "prompt", "invalid_request_error", "context_length_exceeded");
    }
    if (kind == ApiKind::Chat && !request.max_tokens_given) {
      // The rest of the context, as vLLM does, but no more than the KV pool can ever hold.
      const int64_t room = std::min(engine_.config().max_positions, options_.kv_tokens) - length;
      request.params.max_tokens = static_cast<int32_t>(std::max<int64_t>(1, room));
    }
  }
  const std::string endpoint = kind == ApiKind::Chat ? "/v1/chat/completions" : "/v1/completions";
  ++in_flight_;
  try {
    Generation::start({io_, engine_, tokenizer_, metrics_, options_.model_name}, exchange, std::move(request),
                      std::move(prompts), [this, endpoint](int status) {
                        --in_flight_;
                        metrics_.request_finished(endpoint, status);
                      });
  } catch (...) {
    --in_flight_;
    throw;
  }
}

void Api::tokenize(const std::shared_ptr<Exchange>& exchange) {
  const auto body = parse_body(exchange->request());
  std::vector<int32_t> ids;
  if (body.contains("messages")) {
    GenerationRequest request = parse_generation_request(body, ApiKind::Chat);
    ids = chat_prompt(request).ids;
  } else {
    auto prompt = body.find("prompt");
    if (prompt == body.end() || !prompt->is_string()) throw ApiError(400, "prompt: required string (or messages)", "prompt");
    auto add = body.find("add_special_tokens");
    if (add != body.end() && !add->is_boolean()) throw ApiError(400, "add_special_tokens: expected a boolean", "add_special_tokens");
    ids = tokenizer_.encode(prompt->get<std::string>(), add == body.end() || add->get<bool>());
  }
  const json out = {{"tokens", ids}, {"count", ids.size()}, {"max_model_len", engine_.config().max_positions}};
  answer(exchange, "/tokenize", http::status::ok, "application/json", dump(out));
}

void Api::detokenize(const std::shared_ptr<Exchange>& exchange) {
  const auto body = parse_body(exchange->request());
  auto tokens = body.find("tokens");
  if (tokens == body.end() || !tokens->is_array()) throw ApiError(400, "tokens: required array of token ids", "tokens");
  std::vector<int32_t> ids;
  for (const auto& t : *tokens) {
    if (!t.is_number_integer() || t.get<int64_t>() < 0 || t.get<int64_t>() >= tokenizer_.vocab_size()) {
      throw ApiError(400, fmt::format("tokens: {} is not a token id of this vocabulary ({} tokens)", dump(t), tokenizer_.vocab_size()),
                     "tokens");
    }
    ids.push_back(t.get<int32_t>());
  }
  answer(exchange, "/detokenize", http::status::ok, "application/json",
         dump({{"prompt", tokenizer_.decode(ids, /*skip_special=*/false)}}));
}

}  // namespace nanoserve::server
