// nanoserve bench --pp N --tg M: the forward pass alone, as llama.cpp's llama-bench measures it.
// Prompt processing: one forward of N random tokens into an empty cache. Text generation: M
// one-token forwards from an empty cache. Each is repeated; tok/s is the mean over repetitions
// (sample standard deviation beside it). A warm-up pass runs first.
#include <fmt/format.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <random>

#include "cli/bench_forward.h"
#include "cli/common.h"
#include "cli/sampling_options.h"
#include "model/transformer.h"
#include "util/thread_pool.h"

namespace nanoserve::cli {

namespace {

using Clock = std::chrono::steady_clock;

struct Stats {
  double mean = 0, stddev = 0;
};

Stats tokens_per_second(const std::vector<double>& seconds, int64_t tokens) {
  Stats s;
  std::vector<double> rates;
  for (double t : seconds) rates.push_back(static_cast<double>(tokens) / t);
  for (double r : rates) s.mean += r / static_cast<double>(rates.size());
  for (double r : rates) s.stddev += (r - s.mean) * (r - s.mean);
  s.stddev = rates.size() > 1 ? std::sqrt(s.stddev / static_cast<double>(rates.size() - 1)) : 0;
  return s;
}

double time_prompt(const Transformer& transformer, SequenceCache& cache, const std::vector<int32_t>& prompt) {
  cache.clear();
  const auto start = Clock::now();
  transformer.forward(prompt, cache, LogitsFor::LastToken);
  return std::chrono::duration<double>(Clock::now() - start).count();
}

double time_generation(const Transformer& transformer, SequenceCache& cache, const std::vector<int32_t>& tokens) {
  cache.clear();
  const auto start = Clock::now();
  for (int32_t token : tokens) transformer.forward(std::span(&token, 1), cache, LogitsFor::LastToken);
  return std::chrono::duration<double>(Clock::now() - start).count();
}

// Runs `timed` (seconds per run) `repetitions` times over `tokens` tokens and prints the rate.
template <typename Timed>
void report(const char* label, int tokens, int repetitions, Timed timed) {
  if (tokens <= 0) return;
  std::vector<double> seconds;
  for (int r = 0; r < repetitions; ++r) seconds.push_back(timed());
  const Stats s = tokens_per_second(seconds, tokens);
  fmt::print("{}{:<6} {:>10.1f} ± {:.1f} tok/s\n", label, tokens, s.mean, s.stddev);
}

}  // namespace

void run_forward_bench(const ForwardBenchOptions& opt) {
  Model model = load(opt.model);
  const auto backend = open_backend(opt.model, model);
  Transformer transformer(model, backend.get());
  std::mt19937_64 rng(opt.seed);
  std::uniform_int_distribution<int32_t> token(0, static_cast<int32_t>(model.config.vocab_size - 1));
  auto random_tokens = [&](int n) {
    std::vector<int32_t> ids(static_cast<size_t>(n));
    for (auto& id : ids) id = token(rng);
    return ids;
  };
  SequenceCache cache = transformer.new_cache(std::max(opt.prompt_tokens, opt.gen_tokens),
                                              opt.kv_dtype.value_or(default_kv_dtype(*backend, model)));
  // Warm-up of both paths (a GPU loads its kernels on first use), as llama-bench does.
  if (opt.prompt_tokens > 0) time_prompt(transformer, cache, random_tokens(opt.prompt_tokens));
  time_generation(transformer, cache, random_tokens(std::clamp(opt.gen_tokens, 1, 8)));
  fmt::print("{} | {} | {} repetitions\n", opt.model.model_dir.empty() ? "demo" : opt.model.model_dir,
             backend->describe(), opt.repetitions);
  const auto prompt = random_tokens(opt.prompt_tokens), tokens = random_tokens(opt.gen_tokens);
  report("pp", opt.prompt_tokens, opt.repetitions, [&] { return time_prompt(transformer, cache, prompt); });
  report("tg", opt.gen_tokens, opt.repetitions, [&] { return time_generation(transformer, cache, tokens); });
}

}  // namespace nanoserve::cli
