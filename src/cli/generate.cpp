// nanoserve generate: stream a continuation of a prompt to stdout.
#include <fmt/format.h>

#include <algorithm>
#include <chrono>
#include <cstdio>

#include "cli/commands.h"
#include "cli/common.h"
#include "engine/sampler.h"
#include "model/transformer.h"
#include "tokenizer/stream_decoder.h"
#include "util/error.h"

namespace nanoserve::cli {

namespace {

struct GenerateOptions {
  ModelOptions model;
  std::string prompt;
  int max_tokens = 64;
  SamplingParams sampling;
};

void run_generate(const GenerateOptions& opt) {
  Model model = load(opt.model);
  Tokenizer tokenizer = load_tokenizer(opt.model);
  Transformer transformer(model);
  Sampler sampler(opt.sampling);
  const std::vector<int32_t> prompt = tokenizer.encode(opt.prompt);
  const int64_t context = model.config.max_positions;
  if (static_cast<int64_t>(prompt.size()) + opt.max_tokens > context) {
    fail("the prompt ({} tokens) plus -n {} exceeds the model's context of {} tokens", prompt.size(), opt.max_tokens,
         context);
  }
  SequenceCache cache = transformer.new_cache(static_cast<int64_t>(prompt.size()) + opt.max_tokens);
  StreamDecoder stream(tokenizer);
  fmt::print("{}", opt.prompt);
  std::fflush(stdout);

  const auto prefill_start = std::chrono::steady_clock::now();
  std::vector<float> logits = transformer.forward(prompt, cache, LogitsFor::LastToken);
  const double prefill_seconds = seconds_since(prefill_start);
  const auto decode_start = std::chrono::steady_clock::now();
  int generated = 0;
  const auto& eos = model.config.eos_token_ids;
  while (generated < opt.max_tokens) {
    const int32_t next = sampler.sample(logits);
    ++generated;
    if (std::find(eos.begin(), eos.end(), next) != eos.end()) break;
    fmt::print("{}", stream.push(next));
    std::fflush(stdout);
    if (generated == opt.max_tokens) break;
    const int32_t step[1] = {next};
    logits = transformer.forward(step, cache, LogitsFor::LastToken);
  }
  fmt::print("{}\n", stream.finish());
  const double decode_seconds = seconds_since(decode_start);
  fmt::print(stderr, "prompt: {} tokens, {:.1f} tok/s | generated: {} tokens, {:.1f} tok/s\n", prompt.size(),
             static_cast<double>(prompt.size()) / prefill_seconds, generated, generated / decode_seconds);
}

}  // namespace

void register_generate(CLI::App& app) {
  auto opt = std::make_shared<GenerateOptions>();
  CLI::App* cmd = app.add_subcommand("generate", "Generate a continuation of a prompt, streamed to stdout");
  add_model_options(*cmd, opt->model);
  cmd->add_option("-p,--prompt", opt->prompt, "prompt text")->required();
  cmd->add_option("-n,--max-tokens", opt->max_tokens, "tokens to generate at most (stops early at end of text)")
      ->check(CLI::PositiveNumber);
  cmd->add_option("--temperature", opt->sampling.temperature, "0 for greedy decoding; higher is more random")
      ->check(CLI::NonNegativeNumber);
  cmd->add_option("--seed", opt->sampling.seed, "random seed for sampling (same seed, same text)");
  cmd->callback([opt] { run_generate(*opt); });
}

}  // namespace nanoserve::cli
