// nanoserve generate: stream a continuation of a prompt to stdout.
#include <fmt/format.h>

#include <chrono>
#include <cstdio>

#include "cli/commands.h"
#include "cli/common.h"
#include "cli/sampling_options.h"
#include "util/error.h"

namespace nanoserve::cli {

namespace {

struct GenerateOptions {
  ModelOptions model;
  std::string prompt;
  SamplingParams sampling{.temperature = 0.0f, .max_tokens = 64};
  EngineOptions engine;
  KvPoolOptions kv_pool;
};

void run_generate(const GenerateOptions& opt) {
  check_sampling(opt.sampling);
  Model model = load(opt.model);
  const auto ranks = open_ranks(opt.model, model);
  Tokenizer tokenizer = load_tokenizer(opt.model);
  Engine engine(*ranks, &tokenizer, engine_options(opt.engine, opt.kv_pool, model.config, *ranks));
  const std::vector<int32_t> prompt = tokenizer.encode(opt.prompt);
  const auto start = std::chrono::steady_clock::now();
  double first_token_seconds = 0;
  int64_t generated = 0;
  std::string error;
  engine.submit({prompt, opt.sampling}, [&](const Event& e) {
    if (generated == 0) first_token_seconds = seconds_since(start);
    generated += static_cast<int64_t>(e.tokens.size());
    fmt::print("{}", e.text);
    std::fflush(stdout);
    if (e.finish == FinishReason::Error) error = e.error;
  });
  fmt::print("{}", opt.prompt);  // once the request was accepted: a refused one prints only its error
  std::fflush(stdout);
  engine.run_until_idle();
  fmt::print("\n");
  std::fflush(stdout);  // the text's end before the figures on stderr, also when both go to one file
  if (!error.empty()) fail("{}", error);
  const double total = seconds_since(start);
  fmt::print(stderr, "prompt: {} tokens, {:.1f} tok/s | generated: {} tokens, {:.1f} tok/s\n", prompt.size(),
             static_cast<double>(prompt.size()) / first_token_seconds, generated,
             generated > 1 ? static_cast<double>(generated - 1) / (total - first_token_seconds) : 0.0);
}

}  // namespace

void register_generate(CLI::App& app) {
  auto opt = std::make_shared<GenerateOptions>();
  CLI::App* cmd = app.add_subcommand("generate", "Generate a continuation of a prompt, streamed to stdout");
  add_model_options(*cmd, opt->model);
  add_parallel_option(*cmd, opt->model);
  cmd->add_option("-p,--prompt", opt->prompt, "prompt text")->required();
  add_sampling_options(*cmd, opt->sampling);
  add_engine_options(*cmd, opt->engine, opt->kv_pool);
  cmd->callback([opt] { run_generate(*opt); });
}

}  // namespace nanoserve::cli
