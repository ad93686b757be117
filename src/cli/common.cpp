#include "cli/common.h"

#include <fmt/format.h>

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <sys/resource.h>

#include "cli/checks.h"
#include "hub/hub.h"
#include "tokenizer/chat_prompt.h"
#include "util/thread_pool.h"
#include "util/error.h"
#include "util/log.h"

namespace nanoserve::cli {

void add_model_options(CLI::App& command, ModelOptions& options) {
  command.add_option(
      "-m,--model", options.model_dir,
      "Hugging Face model directory (config.json, *.safetensors, tokenizer.json), a GGUF file, or a Hub id "
      "ORG/NAME[@REVISION] (pulled into the Hugging Face cache when missing); default: the bundled demo model");
  command.add_option("--threads", options.threads, "worker threads (default: one per core)")->check(non_negative());
  command
      .add_option("--device", options.device,
                  "where the model runs: cpu (default) or cuda (GPU 0; GPUs 0..N-1 with --tensor-parallel-size N)")
      ->check(CLI::IsMember({"cpu", "cuda"}));
  command.add_flag("--batch-invariant", options.batch_invariant,
                   "GPU: give each request the same results whatever else runs in its batch (fixed-order matrix "
                   "products; prefill is slower). The CPU always does");
  command.add_flag("--enforce-eager", options.enforce_eager,
                   "GPU: launch every kernel of every step instead of replaying decode steps recorded as CUDA graphs");
}

void add_parallel_option(CLI::App& command, ModelOptions& options) {
  command
      .add_option("--tensor-parallel-size,--tp", options.tensor_parallel_size,
                  "split the model across this many ranks: attention heads, KV heads and MLP width divided among "
                  "GPUs 0..N-1 (--device cuda, joined by NCCL) or threads (--device cpu, for checking); default 1")
      ->check(positive());
}

// The bundled demo model: models/demo of the checkout the program runs from (found up from the
// executable, wherever the build directory is), else of the checkout it was built in.
std::string demo_model_dir() {
  std::error_code ec;
  const auto exe = std::filesystem::read_symlink("/proc/self/exe", ec);
  for (auto dir = exe.parent_path(); !ec && dir.has_relative_path(); dir = dir.parent_path()) {
    if (std::filesystem::exists(dir / "models/demo/config.json", ec)) return (dir / "models/demo").string();
  }
  return NANOSERVE_DEFAULT_MODEL;
}

std::string model_dir(const ModelOptions& options) {
  return options.model_dir.empty() ? demo_model_dir() : hub::resolve_model(options.model_dir);
}

double percentile(std::vector<double> values, double p) {
  if (values.empty()) return 0;
  std::sort(values.begin(), values.end());
  const auto i = static_cast<size_t>(p * static_cast<double>(values.size() - 1) + 0.5);
  return values[std::min(i, values.size() - 1)];
}

double seconds_since(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

double peak_memory_mib() {
  rusage usage{};
  getrusage(RUSAGE_SELF, &usage);
  return static_cast<double>(usage.ru_maxrss) / 1024.0;  // Linux reports KiB
}

Model load(const ModelOptions& options) {
  ThreadPool::set_global_threads(options.threads);
  const auto start = std::chrono::steady_clock::now();
  Model model = load_model(model_dir(options));
  log::info("loaded {} ({} family, {} layers) in {:.2f}s", model_dir(options), model.arch.family, model.config.layers,
            seconds_since(start));
  return model;
}

namespace {

BackendOptions backend_options(const ModelOptions& options) {
  return {.batch_invariant = options.batch_invariant, .cuda_graphs = !options.enforce_eager};
}

}  // namespace

std::unique_ptr<Backend> open_backend(const ModelOptions& options, const Model& model) {
  const auto start = std::chrono::steady_clock::now();
  auto backend = make_backend(options.device, model, backend_options(options));
  log::info("running on {} (set up in {:.2f}s)", backend->describe(), seconds_since(start));
  return backend;
}

std::unique_ptr<TensorParallel> open_ranks(const ModelOptions& options, const Model& model) {
  const auto start = std::chrono::steady_clock::now();
  auto ranks =
      std::make_unique<TensorParallel>(model, options.tensor_parallel_size, options.device, backend_options(options));
  log::info("running on {} (set up in {:.2f}s)", ranks->describe(), seconds_since(start));
  return ranks;
}

Tokenizer load_tokenizer(const ModelOptions& options) { return Tokenizer::from_file(model_dir(options)); }

void add_chat_template_option(CLI::App& command, ModelOptions& options) {
  command.add_option("--chat-template", options.chat_template,
                     "a Jinja chat template to use instead of the model's: a file, or the template itself");
}

std::optional<ChatTemplate> load_chat_template(const ModelOptions& options) {
  return ChatTemplate::from_model(model_dir(options), options.chat_template);
}

ChatTemplate require_chat_template(const ModelOptions& options) {
  auto chat_template = load_chat_template(options);
  if (!chat_template) {
    fail(
        "{}: the model has no chat template (tokenizer_config.json chat_template, chat_template.jinja, or GGUF "
        "tokenizer.chat_template); give one with --chat-template FILE",
        model_dir(options));
  }
  return std::move(*chat_template);
}

void add_end_of_turn_ids(Model& model, const Tokenizer& tokenizer, const ChatTemplate* chat_template) {
  if (!chat_template) return;
  auto& eos = model.config.eos_token_ids;
  std::vector<std::string> added;
  for (int32_t id : end_of_turn_ids(*chat_template, tokenizer)) {
    if (id >= model.config.vocab_size || std::find(eos.begin(), eos.end(), id) != eos.end()) continue;
    eos.push_back(id);
    added.push_back(fmt::format("{} {}", id, tokenizer.decode({id}, /*skip_special=*/false)));
  }
  if (!added.empty()) log::info("generation also stops at the chat template's end of turn: {}", fmt::join(added, ", "));
}

}  // namespace nanoserve::cli
