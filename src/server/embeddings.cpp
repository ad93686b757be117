#include "server/embeddings.h"

#include <fmt/format.h>
#include <fmt/ranges.h>
#include <openssl/evp.h>

#include <bit>
#include <boost/asio/post.hpp>
#include <cmath>
#include <cstring>

#include "server/api_error.h"
#include "server/openai_response.h"
#include "util/error.h"
#include "util/json_parse.h"

namespace nanoserve::server {

using json = nlohmann::ordered_json;

namespace {

ApiError input_error(const std::string& message) { return ApiError(400, "input: " + message, "input"); }

void check_ids(const json& ids, const std::string& where) {
  if (ids.empty()) throw input_error(where + "is an empty list of token ids");
  for (const auto& id : ids) {
    if (!id.is_number_integer()) throw input_error(fmt::format("{}holds {}, not a token id", where, json_excerpt(id)));
  }
}

void check_input(const json& input) {
  if (input.is_string()) {
    if (input.get_ref<const std::string&>().empty()) throw input_error("an empty string has no embedding");
    return;
  }
  if (!input.is_array())
    throw input_error("expected a string, a list of strings, a list of token ids or a list of those");
  if (input.empty()) throw input_error("an empty list; give at least one input");
  if (static_cast<int64_t>(input.size()) > kMaxEmbeddingInputs) {
    throw input_error(
        fmt::format("{} inputs, more than the {} one request may hold", input.size(), kMaxEmbeddingInputs));
  }
  if (input[0].is_number_integer()) return check_ids(input, "");
  for (size_t i = 0; i < input.size(); ++i) {
    const json& item = input[i];
    if (item.is_string() && !item.get_ref<const std::string&>().empty()) continue;
    if (item.is_string()) throw input_error(fmt::format("input[{}] is an empty string, which has no embedding", i));
    if (!item.is_array())
      throw input_error(fmt::format("input[{}] is {}, not a string or a list of token ids", i, json_excerpt(item)));
    check_ids(item, fmt::format("input[{}] ", i));
  }
}

std::string base64_of(const std::vector<float>& vector) {
  static_assert(std::endian::native == std::endian::little, "base64 embeddings are little-endian float32 bytes");
  const size_t bytes = vector.size() * sizeof(float);
  std::string out(4 * ((bytes + 2) / 3) + 1, '\0');
  const int length = EVP_EncodeBlock(reinterpret_cast<unsigned char*>(out.data()),
                                     reinterpret_cast<const unsigned char*>(vector.data()), static_cast<int>(bytes));
  out.resize(static_cast<size_t>(length));
  return out;
}

}  // namespace

EmbeddingsRequest parse_embeddings_request(const json& body) {
  if (!body.is_object()) throw ApiError(400, "the request body must be a JSON object");
  EmbeddingsRequest request;
  auto model = body.find("model");
  if (model != body.end() && !model->is_null()) {
    if (!model->is_string()) throw ApiError(400, "model: expected a string", "model");
    request.model = model->get<std::string>();
  }
  auto input = body.find("input");
  if (input == body.end()) throw input_error("required (a string, a list of strings, or token ids)");
  check_input(*input);
  request.input = *input;
  auto format = body.find("encoding_format");
  if (format != body.end() && !format->is_null()) {
    if (!format->is_string() || (*format != "float" && *format != "base64")) {
      throw ApiError(400, fmt::format("encoding_format: {} is not 'float' or 'base64'", json_excerpt(*format)),
                     "encoding_format");
    }
    request.base64 = *format == "base64";
  }
  auto dimensions = body.find("dimensions");
  if (dimensions != body.end() && !dimensions->is_null()) {
    if (!dimensions->is_number_integer() || dimensions->get<int64_t>() < 1) {
      throw ApiError(400, fmt::format("dimensions: {} is not a positive integer", json_excerpt(*dimensions)),
                     "dimensions");
    }
    request.dimensions = dimensions->get<int64_t>();
  }
  auto user = body.find("user");
  if (user != body.end() && !user->is_null() && !user->is_string())
    throw ApiError(400, "user: expected a string", "user");
  return request;
}

std::vector<float> truncate_embedding(std::vector<float> vector, int64_t dimensions, bool normalize) {
  vector.resize(std::min(vector.size(), static_cast<size_t>(dimensions)));
  if (normalize) normalize_l2(vector);
  return vector;
}

std::string embeddings_response(const std::vector<std::vector<float>>& vectors, bool base64, const std::string& model,
                                int64_t prompt_tokens) {
  // Written by hand: each float as its shortest round-trip form, not as a 17-digit double.
  std::string body = R"({"object":"list","data":[)";
  for (size_t i = 0; i < vectors.size(); ++i) {
    if (i > 0) body += ',';
    body += fmt::format(R"({{"object":"embedding","index":{},"embedding":)", i);
    body += base64 ? json(base64_of(vectors[i])).dump() : fmt::format("[{}]", fmt::join(vectors[i], ","));
    body += '}';
  }
  body += fmt::format(R"(],"model":{},"usage":{{"prompt_tokens":{},"total_tokens":{}}}}})", json(model).dump(),
                      prompt_tokens, prompt_tokens);
  return body;
}

void EmbeddingCall::start(boost::asio::io_context& io, Engine& engine, Metrics& metrics,
                          std::shared_ptr<Exchange> exchange, std::vector<std::vector<int32_t>> inputs,
                          Settings settings, Done done) {
  std::shared_ptr<EmbeddingCall> call(new EmbeddingCall(io, engine, metrics, std::move(exchange), std::move(inputs),
                                                        std::move(settings), std::move(done)));
  call->submit_all();
}

EmbeddingCall::EmbeddingCall(boost::asio::io_context& io, Engine& engine, Metrics& metrics,
                             std::shared_ptr<Exchange> exchange, std::vector<std::vector<int32_t>> inputs,
                             Settings settings, Done done)
    : io_(io),
      engine_(engine),
      metrics_(metrics),
      exchange_(std::move(exchange)),
      inputs_(std::move(inputs)),
      settings_(std::move(settings)),
      done_(std::move(done)),
      vectors_(inputs_.size()) {}

void EmbeddingCall::submit_all() {
  auto self = shared_from_this();
  for (size_t i = 0; i < inputs_.size(); ++i) {
    prompt_tokens_ += static_cast<int64_t>(inputs_[i].size());
    EventCallback callback = [self](const Event& event) {
      boost::asio::post(self->io_, [self, event] { self->on_event(event); });
    };
    try {
      Request request{inputs_[i], {}, settings_.pooling};
      const uint64_t id = engine_.submit(std::move(request), std::move(callback));
      request_ids_.push_back(id);
      input_of_request_[id] = i;
    } catch (const Error& e) {
      // Those already queued end as cancelled, unheard; the caller answers and counts this call.
      client_gone_ = true;
      done_ = nullptr;
      for (uint64_t id : request_ids_) engine_.cancel(id);
      finished_ = inputs_.size() - i;
      throw ApiError(400, inputs_.size() > 1 ? fmt::format("input[{}]: {}", i, e.what()) : std::string(e.what()),
                     "input");
    }
  }
  exchange_->on_close([weak = weak_from_this()] {
    if (auto call = weak.lock()) {
      call->client_gone_ = true;
      for (uint64_t id : call->request_ids_) call->engine_.cancel(id);
    }
  });
}

void EmbeddingCall::on_event(const Event& event) {
  if (!event.finish) return;
  const size_t input = input_of_request_.at(event.request_id);
  if (*event.finish == FinishReason::Error && error_.empty()) error_ = event.error;
  std::vector<float> vector = event.embedding;
  if (settings_.dimensions)
    vector = truncate_embedding(std::move(vector), *settings_.dimensions, settings_.pooling.normalize);
  for (float x : vector) {
    if (!std::isfinite(x) && error_.empty())
      error_ = fmt::format("input {}: the model's embedding holds a non-finite value", input);
  }
  vectors_[input] = std::move(vector);
  if (++finished_ == inputs_.size()) complete();
}

void EmbeddingCall::complete() {
  int status = 200;
  if (client_gone_) {
    status = 499;  // the client closed the connection (nginx's code)
  } else if (!error_.empty()) {
    status = 500;
    exchange_->respond(http::status::internal_server_error, "application/json",
                       dump(ApiError(500, error_, "", "server_error").body()));
  } else {
    metrics_.tokens(prompt_tokens_, 0);
    exchange_->respond(http::status::ok, "application/json",
                       embeddings_response(vectors_, settings_.base64, settings_.model_name, prompt_tokens_));
  }
  CallUsage usage;
  usage.prompt_tokens = prompt_tokens_;
  if (done_) std::exchange(done_, nullptr)(status, usage);
}

}  // namespace nanoserve::server
