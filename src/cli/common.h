// What the subcommands share: model options, loading with timing, errors to stderr.
#pragma once

#include <CLI/CLI.hpp>
#include <string>
#include <vector>

#include <optional>

#include "backend/backend.h"
#include "model/loader.h"
#include "parallel/tensor_parallel.h"
#include "tokenizer/chat_template.h"
#include "tokenizer/tokenizer.h"

namespace nanoserve::cli {

struct ModelOptions {
  std::string model_dir;       // empty: the bundled demo model
  int threads = 0;             // 0: all cores
  std::string device = "cpu";  // cpu or cuda
  bool batch_invariant = false;
  bool enforce_eager = false;    // no CUDA graphs
  int tensor_parallel_size = 1;  // ranks the model is split across (GPUs 0.. with --device cuda)
  std::string chat_template;     // --chat-template: a file or the template itself; empty: the model's
};

// Adds -m/--model, --threads, --device, --batch-invariant and --enforce-eager to a subcommand.
void add_model_options(CLI::App& command, ModelOptions& options);

// Adds --tensor-parallel-size (the commands that run the engine).
void add_parallel_option(CLI::App& command, ModelOptions& options);

// Applies --threads and loads the model, reporting the load time on stderr.
Model load(const ModelOptions& options);
// The backend --device names, with the model's weights on it; reported on stderr.
std::unique_ptr<Backend> open_backend(const ModelOptions& options, const Model& model);
// The model split across --tensor-parallel-size ranks of --device (one: the model whole on it).
std::unique_ptr<TensorParallel> open_ranks(const ModelOptions& options, const Model& model);
Tokenizer load_tokenizer(const ModelOptions& options);

// Adds --chat-template (the commands that render conversations).
void add_chat_template_option(CLI::App& command, ModelOptions& options);
// The model's chat template, or --chat-template's; empty when there is neither.
std::optional<ChatTemplate> load_chat_template(const ModelOptions& options);
// As load_chat_template, but a model without one is an Error that says how to give one.
ChatTemplate require_chat_template(const ModelOptions& options);
std::string model_dir(const ModelOptions& options);

// The end-of-turn token of the chat template and the tokenizer's eos join the model's eos ids, so
// that generation stops there whatever generation_config.json lists; printed on stderr.
void add_end_of_turn_ids(Model& model, const Tokenizer& tokenizer, const ChatTemplate* chat_template);

double seconds_since(std::chrono::steady_clock::time_point start);
// The p-th quantile (0 to 1) of values, the nearest sample; 0 for none.
double percentile(std::vector<double> values, double p);
double peak_memory_mib();  // the process's peak resident memory so far

}  // namespace nanoserve::cli
