#include "server/metrics.h"

#include <fmt/format.h>

#include <algorithm>

namespace nanoserve::server {

void Histogram::observe(double value) {
  const auto bucket = std::lower_bound(bounds_.begin(), bounds_.end(), value) - bounds_.begin();
  ++counts_[static_cast<size_t>(bucket)];
  sum_ += value;
  ++count_;
}

void Histogram::write(std::string& out, const std::string& name, const std::string& help) const {
  out += fmt::format("# HELP {} {}\n# TYPE {} histogram\n", name, help, name);
  uint64_t cumulative = 0;
  for (size_t i = 0; i < bounds_.size(); ++i) {
    cumulative += counts_[i];
    out += fmt::format("{}_bucket{{le=\"{}\"}} {}\n", name, bounds_[i], cumulative);
  }
  out += fmt::format("{}_bucket{{le=\"+Inf\"}} {}\n{}_sum {}\n{}_count {}\n", name, count_, name, sum_, name, count_);
}

Metrics::Metrics()
    : ttft_({0.001, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30}),
      itl_({0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1}) {}

namespace {
// A label value in the exposition format: backslash, quote and newline escaped.
std::string label(const std::string& value) {
  std::string out;
  for (char c : value) {
    if (c == '\\' || c == '"') out += '\\';
    out += c == '\n' ? std::string("\\n") : std::string(1, c);
  }
  return out;
}

void write_metric(std::string& out, const char* name, const char* type, const char* help, int64_t value) {
  out += fmt::format("# HELP {} {}\n# TYPE {} {}\n{} {}\n", name, help, name, type, name, value);
}
}  // namespace

std::string Metrics::render(const EngineStats& e) const {
  std::string out = "# HELP nanoserve_requests_total HTTP requests answered, by endpoint and status.\n"
                    "# TYPE nanoserve_requests_total counter\n";
  for (const auto& [key, count] : requests_) {
    out += fmt::format("nanoserve_requests_total{{endpoint=\"{}\",status=\"{}\"}} {}\n", label(key.first), key.second, count);
  }
  write_metric(out, "nanoserve_prompt_tokens_total", "counter", "Prompt tokens of finished requests.", prompt_tokens_);
  write_metric(out, "nanoserve_generation_tokens_total", "counter", "Tokens generated for finished requests.", generated_tokens_);
  write_metric(out, "nanoserve_prompt_tokens_computed_total", "counter", "Prompt tokens run through the model (not from the prefix cache).",
               e.prompt_tokens_computed);
  write_metric(out, "nanoserve_tokens_generated_total", "counter", "Tokens the engine has sampled, finished requests or not.",
               e.generated_tokens);
  write_metric(out, "nanoserve_num_requests_running", "gauge", "Sequences in the running batch.", e.running);
  write_metric(out, "nanoserve_num_requests_waiting", "gauge", "Sequences waiting to be scheduled.", e.waiting);
  write_metric(out, "nanoserve_kv_blocks_total", "gauge", "KV cache blocks in the pool.", e.total_blocks);
  write_metric(out, "nanoserve_kv_blocks_used", "gauge", "KV cache blocks held by sequences.", e.used_blocks);
  write_metric(out, "nanoserve_kv_blocks_peak_used", "gauge", "Most KV cache blocks held at once.", e.peak_used_blocks);
  write_metric(out, "nanoserve_prefix_cache_queries_total", "counter", "Full prompt blocks looked up in the prefix cache.", e.prefix_queries);
  write_metric(out, "nanoserve_prefix_cache_hits_total", "counter", "Full prompt blocks found in the prefix cache.", e.prefix_hits);
  write_metric(out, "nanoserve_preemptions_total", "counter", "Sequences preempted when the KV pool ran out.", e.preemptions);
  ttft_.write(out, "nanoserve_time_to_first_token_seconds", "Time from arrival to the first generated token.");
  itl_.write(out, "nanoserve_inter_token_latency_seconds", "Time between consecutive generated tokens of a sequence.");
  return out;
}

}  // namespace nanoserve::server
