// One function per subcommand: register adds it to the app, and the callback runs it.
#pragma once

#include <CLI/CLI.hpp>

namespace nanoserve::cli {

void register_generate(CLI::App& app);
void register_logits(CLI::App& app);
void register_perplexity(CLI::App& app);
void register_inspect(CLI::App& app);
void register_bench(CLI::App& app);
void register_chat(CLI::App& app);
void register_pull(CLI::App& app);
void register_serve(CLI::App& app);
void register_tokenize(CLI::App& app);
void register_grammar_test(CLI::App& app);  // tokenize and detokenize

}  // namespace nanoserve::cli
