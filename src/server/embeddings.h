// POST /v1/embeddings: OpenAI's embeddings API on an embedding model (serve --task embed). Each
// input is an engine request that prefills its tokens and pools their final hidden states (nothing
// generated, no KV kept); the engine batches them with whatever else is in flight.
#pragma once

#include <boost/asio/io_context.hpp>
#include <cstdint>
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
#include "server/request_log.h"

namespace nanoserve::server {

constexpr int64_t kMaxEmbeddingInputs = 2048;  // inputs in one request, as OpenAI allows

struct EmbeddingsRequest {
  std::string model;                  // empty: the served one
  nlohmann::ordered_json input;       // a string, a list of strings, a list of ids, or a list of id lists
  bool base64 = false;                // encoding_format "base64": each vector's little-endian float32 bytes
  std::optional<int64_t> dimensions;  // Matryoshka: keep the leading dimensions
};

// Checks the fields' types and sizes; throws ApiError (400) naming the field at fault.
EmbeddingsRequest parse_embeddings_request(const nlohmann::ordered_json& body);

// The vector's first `dimensions` values, scaled back to unit length when `normalize`.
std::vector<float> truncate_embedding(std::vector<float> vector, int64_t dimensions, bool normalize);

// The response body: the vectors in input order, as floats or base64, and the usage.
std::string embeddings_response(const std::vector<std::vector<float>>& vectors, bool base64, const std::string& model,
                                int64_t prompt_tokens);

// One embeddings call in flight on the io thread: its engine requests and the vectors they return.
class EmbeddingCall : public std::enable_shared_from_this<EmbeddingCall> {
 public:
  struct Settings {
    Pooling pooling;
    std::optional<int64_t> dimensions;
    bool base64 = false;
    std::string model_name;
  };
  // Called once all inputs are answered (or the client left: 499).
  using Done = std::function<void(int status, const CallUsage& usage)>;

  // Submits every input; throws ApiError (400) if the engine refuses one, before anything is sent.
  static void start(boost::asio::io_context& io, Engine& engine, Metrics& metrics, std::shared_ptr<Exchange> exchange,
                    std::vector<std::vector<int32_t>> inputs, Settings settings, Done done);

 private:
  EmbeddingCall(boost::asio::io_context& io, Engine& engine, Metrics& metrics, std::shared_ptr<Exchange> exchange,
                std::vector<std::vector<int32_t>> inputs, Settings settings, Done done);
  void submit_all();
  void on_event(const Event& event);
  void complete();

  boost::asio::io_context& io_;
  Engine& engine_;
  Metrics& metrics_;
  std::shared_ptr<Exchange> exchange_;
  std::vector<std::vector<int32_t>> inputs_;
  Settings settings_;
  Done done_;
  std::vector<uint64_t> request_ids_;
  std::unordered_map<uint64_t, size_t> input_of_request_;
  std::vector<std::vector<float>> vectors_;
  std::string error_;  // the first input's engine error
  size_t finished_ = 0;
  int64_t prompt_tokens_ = 0;
  bool client_gone_ = false;
};

}  // namespace nanoserve::server
