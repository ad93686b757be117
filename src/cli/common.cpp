#include "cli/common.h"

#include <fmt/format.h>

#include <chrono>

#include "hub/hub.h"
#include "util/thread_pool.h"

namespace nanoserve::cli {

void add_model_options(CLI::App& command, ModelOptions& options) {
  command.add_option("-m,--model", options.model_dir,
                     "Hugging Face model directory (config.json, *.safetensors, tokenizer.json), or a Hub id "
                     "ORG/NAME[@REVISION] (pulled into the Hugging Face cache when missing); default: the bundled demo model");
  command.add_option("--threads", options.threads, "worker threads (default: one per core)")->check(CLI::NonNegativeNumber);
}

std::string model_dir(const ModelOptions& options) {
  return options.model_dir.empty() ? std::string(NANOSERVE_DEFAULT_MODEL) : hub::resolve_model(options.model_dir);
}

double seconds_since(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

Model load(const ModelOptions& options) {
  ThreadPool::set_global_threads(options.threads);
  const auto start = std::chrono::steady_clock::now();
  Model model = load_model(model_dir(options));
  fmt::print(stderr, "loaded {} ({} family, {} layers) in {:.2f}s\n", model_dir(options), model.arch.family,
             model.config.layers, seconds_since(start));
  return model;
}

Tokenizer load_tokenizer(const ModelOptions& options) { return Tokenizer::from_file(model_dir(options)); }

}  // namespace nanoserve::cli
