// Counters and histograms the server exports at GET /metrics in the Prometheus text format, next to
// the engine's own gauges (sequences, KV blocks, prefix-cache hits). The ones routers read (the
// Gateway API Inference Extension's model server protocol, llm-d) are also exported under vLLM's
// names, labelled with the model's name. Used on the io thread only.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "engine/engine.h"

namespace nanoserve::server {

class Histogram {
 public:
  explicit Histogram(std::vector<double> bounds) : bounds_(std::move(bounds)), counts_(bounds_.size() + 1) {}
  void observe(double value);
  // Appends the _bucket, _sum and _count lines of `name`.
  void write(std::string& out, const std::string& name, const std::string& help) const;

 private:
  std::vector<double> bounds_;
  std::vector<uint64_t> counts_;  // per bucket, not cumulative; the last is +Inf
  double sum_ = 0;
  uint64_t count_ = 0;
};

class Metrics {
 public:
  // model_name labels the metrics exported under vLLM's names.
  explicit Metrics(std::string model_name = "");
  // endpoint: one of the server's routes or "other" (never a client's raw path: the labels stay few).
  void request_finished(const std::string& endpoint, int status) { ++requests_[{endpoint, status}]; }
  void tokens(int64_t prompt, int64_t generated) {
    prompt_tokens_ += prompt;
    generated_tokens_ += generated;
  }
  void first_token(double seconds) { ttft_.observe(seconds); }
  void inter_token(double seconds) { itl_.observe(seconds); }

  std::string render(const EngineStats& engine) const;

 private:
  void render_vllm_names(std::string& out, const EngineStats& engine) const;

  std::string model_name_;
  std::map<std::pair<std::string, int>, uint64_t> requests_;
  int64_t prompt_tokens_ = 0, generated_tokens_ = 0;
  Histogram ttft_, itl_;
};

}  // namespace nanoserve::server
