// nanoserve: an LLM inference engine. Each subcommand lives in its own file in this directory.
#include <malloc.h>

#include <fmt/format.h>

#include "cli/commands.h"
#include "cli/mistakes.h"
#include "util/error.h"

int main(int argc, char** argv) {
  // Freed activation buffers stay with the process for the next forward step: by default glibc
  // maps large blocks anew and trims the heap, so every step paid page faults on fresh zeroed
  // pages (35% of a demo-model prefill on the CPU). The working set is the peak step's.
  mallopt(M_MMAP_THRESHOLD, 1 << 30);
  mallopt(M_TRIM_THRESHOLD, 1 << 30);
  CLI::App app{"nanoserve: run large language models from Hugging Face checkpoints", "nanoserve"};
  app.require_subcommand(1);
  app.set_version_flag("--version", "nanoserve 0.1.0");
  nanoserve::cli::register_generate(app);
  nanoserve::cli::register_logits(app);
  nanoserve::cli::register_perplexity(app);
  nanoserve::cli::register_inspect(app);
  nanoserve::cli::register_bench(app);
  nanoserve::cli::register_chat(app);
  nanoserve::cli::register_pull(app);
  nanoserve::cli::register_serve(app);
  nanoserve::cli::register_tokenize(app);
  nanoserve::cli::register_grammar_test(app);
  // Usage mistakes are told with their fix and exit 2, before anything loads.
  auto mistake = nanoserve::cli::unknown_subcommand(app, argc, argv);
  if (!mistake) mistake = nanoserve::cli::foreign_flag(app, argc, argv);
  if (auto message = mistake) {
    fmt::print(stderr, "error: {}\n", *message);
    return 2;
  }
  try {
    app.parse(argc, argv);
  } catch (const CLI::ExtrasError&) {
    fmt::print(stderr, "error: {}\n", nanoserve::cli::explain_extras(app));
    return 2;
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  } catch (const nanoserve::Error& e) {
    fmt::print(stderr, "error: {}\n", e.what());
    return 1;
  } catch (const std::bad_alloc&) {
    fmt::print(stderr, "error: out of memory\n");
    return 1;
  }
  return 0;
}
