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

Metrics::Metrics(std::string model_name)
    : model_name_(std::move(model_name)),
      ttft_({0.001, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30}),
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
  std::string out =
      "# HELP nanoserve_requests_total HTTP requests answered, by endpoint and status.\n"
      "# TYPE nanoserve_requests_total counter\n";
  for (const auto& [key, count] : requests_) {
    out += fmt::format("nanoserve_requests_total{{endpoint=\"{}\",status=\"{}\"}} {}\n", label(key.first), key.second,
                       count);
  }
  write_metric(out, "nanoserve_prompt_tokens_total", "counter", "Prompt tokens of finished requests.", prompt_tokens_);
  write_metric(out, "nanoserve_generation_tokens_total", "counter", "Tokens generated for finished requests.",
               generated_tokens_);
  write_metric(out, "nanoserve_prompt_tokens_computed_total", "counter",
               "Prompt tokens run through the model (not from the prefix cache).", e.prompt_tokens_computed);
  write_metric(out, "nanoserve_tokens_generated_total", "counter",
               "Tokens the engine has sampled, finished requests or not.", e.generated_tokens);
  write_metric(out, "nanoserve_num_requests_running", "gauge", "Sequences in the running batch.", e.running);
  write_metric(out, "nanoserve_num_requests_waiting", "gauge", "Sequences waiting to be scheduled.", e.waiting);
  write_metric(out, "nanoserve_kv_blocks_total", "gauge", "KV cache blocks in the pool.", e.total_blocks);
  write_metric(out, "nanoserve_kv_blocks_used", "gauge", "KV cache blocks held by sequences.", e.used_blocks);
  write_metric(out, "nanoserve_kv_blocks_peak_used", "gauge", "Most KV cache blocks held at once.", e.peak_used_blocks);
  write_metric(out, "nanoserve_prefix_cache_queries_total", "counter",
               "Full prompt blocks looked up in the prefix cache.", e.prefix_queries);
  write_metric(out, "nanoserve_prefix_cache_hits_total", "counter", "Full prompt blocks found in the prefix cache.",
               e.prefix_hits);
  write_metric(out, "nanoserve_preemptions_total", "counter", "Sequences preempted when the KV pool ran out.",
               e.preemptions);
  ttft_.write(out, "nanoserve_time_to_first_token_seconds", "Time from arrival to the first generated token.");
  itl_.write(out, "nanoserve_inter_token_latency_seconds", "Time between consecutive generated tokens of a sequence.");
  render_vllm_names(out, e);
  return out;
}

// vLLM's names and meanings: requests are sequences, KV usage a fraction, prefix-cache queries and
// hits counted in tokens.
void Metrics::render_vllm_names(std::string& out, const EngineStats& e) const {
  const std::string model = fmt::format("model_name=\"{}\"", label(model_name_));
  const auto metric = [&](const char* name, const char* type, const char* help, auto value) {
    out += fmt::format("# HELP {} {}\n# TYPE {} {}\n{}{{{}}} {}\n", name, help, name, type, name, model, value);
  };
  metric("vllm:num_requests_running", "gauge", "Sequences in the running batch.", e.running);
  metric("vllm:num_requests_waiting", "gauge", "Sequences waiting to be scheduled.", e.waiting);
  const double usage =
      e.total_blocks > 0 ? static_cast<double>(e.used_blocks) / static_cast<double>(e.total_blocks) : 0.0;
  metric("vllm:kv_cache_usage_perc", "gauge", "Fraction of the KV cache blocks in use (1 is full).", usage);
  metric("vllm:gpu_cache_usage_perc", "gauge", "Fraction of the KV cache blocks in use (1 is full; vLLM's older name).",
         usage);
  out += fmt::format(
      "# HELP vllm:cache_config_info The KV cache's layout.\n# TYPE vllm:cache_config_info gauge\n"
      "vllm:cache_config_info{{{},block_size=\"{}\",num_gpu_blocks=\"{}\"}} 1\n",
      model, e.block_size, e.total_blocks);
  metric("vllm:prefix_cache_queries_total", "counter", "Prompt tokens looked up in the prefix cache (whole blocks).",
         e.prefix_queries * e.block_size);
  metric("vllm:prefix_cache_hits_total", "counter", "Prompt tokens found in the prefix cache.",
         e.prefix_hits * e.block_size);
  metric("vllm:num_preemptions_total", "counter", "Sequences preempted when the KV pool ran out.", e.preemptions);
  metric("vllm:prompt_tokens_total", "counter", "Prompt tokens of finished requests.", prompt_tokens_);
  metric("vllm:generation_tokens_total", "counter", "Tokens generated for finished requests.", generated_tokens_);
}

}  // namespace nanoserve::server
