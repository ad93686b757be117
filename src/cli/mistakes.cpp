#include "cli/mistakes.h"

#include <fmt/format.h>

#include <algorithm>
#include <array>
#include <filesystem>
#include <utility>
#include <vector>

#include "cli/checks.h"

namespace nanoserve::cli {

namespace {

// Flags of llama.cpp and vLLM that mean something else here, or nothing: what to use instead.
constexpr std::array<std::pair<std::string_view, std::string_view>, 6> kForeignFlags{{
    {"-ngl", "nanoserve keeps the whole model on one device: use --device cuda"},
    {"--n-gpu-layers", "nanoserve keeps the whole model on one device: use --device cuda"},
    {"-hf", "name a Hub model with -m ORG/NAME"},
    {"-c", "the context length is set where the engine runs: generate, chat, serve and bench take --max-model-len"},
    {"--ctx-size",
     "the context length is set where the engine runs: generate, chat, serve and bench take --max-model-len"},
    {"--max-model-len",
     "the context length is set where the engine runs: generate, chat, serve and bench take --max-model-len"},
}};

std::vector<std::string> subcommand_names(const CLI::App& app) {
  std::vector<std::string> names;
  for (const CLI::App* sub : app.get_subcommands([](const CLI::App*) { return true; }))
    names.push_back(sub->get_name());
  return names;
}

std::vector<std::string> flag_names(const CLI::App& command) {
  std::vector<std::string> names;
  for (const CLI::Option* option : command.get_options()) {
    for (const auto& n : option->get_lnames()) names.push_back("--" + n);
    for (const auto& n : option->get_snames()) names.push_back("-" + n);
  }
  return names;
}

std::string explain(const CLI::App& command, const std::string& argument) {
  const std::string flag = argument.substr(0, argument.find('='));
  for (const auto& [foreign, advice] : kForeignFlags) {
    if (flag == foreign) return fmt::format("{} is not a flag of {}: {}", flag, command.get_name(), advice);
  }
  if (flag.rfind('-', 0) == 0) {
    const std::string near = nearest(flag, flag_names(command));
    return near.empty()
               ? fmt::format("{} is not a flag of {} (see {} --help)", flag, command.get_name(), command.get_name())
               : fmt::format("{} is not a flag of {}; did you mean {}?", flag, command.get_name(), near);
  }
  const bool model_like = std::filesystem::exists(argument) || argument.find('/') != std::string::npos;
  if (model_like && command.get_option_no_throw("-m") != nullptr) {
    return fmt::format("{} takes the model as a flag: {} -m {}", command.get_name(), command.get_name(), argument);
  }
  return fmt::format("{} does not take the argument '{}'", command.get_name(), argument);
}

}  // namespace

std::optional<std::string> unknown_subcommand(const CLI::App& app, int argc, char** argv) {
  if (argc < 2 || argv[1][0] == '-') return std::nullopt;
  const std::string word = argv[1];
  const auto names = subcommand_names(app);
  if (std::find(names.begin(), names.end(), word) != names.end()) return std::nullopt;
  const std::string near = nearest(word, names);
  return near.empty() ? fmt::format("'{}' is not a nanoserve command (nanoserve --help lists them)", word)
                      : fmt::format("'{}' is not a nanoserve command; did you mean '{}'?", word, near);
}

std::optional<std::string> foreign_flag(const CLI::App& app, int argc, char** argv) {
  if (argc < 2 || argv[1][0] == '-') return std::nullopt;
  const auto subcommands = app.get_subcommands([&](const CLI::App* sub) { return sub->get_name() == argv[1]; });
  if (subcommands.empty()) return std::nullopt;
  const CLI::App* command = subcommands.front();
  for (int i = 2; i < argc; ++i) {
    const std::string argument = argv[i];
    const std::string flag = argument.substr(0, argument.find('='));
    const bool foreign =
        std::any_of(kForeignFlags.begin(), kForeignFlags.end(), [&](const auto& f) { return f.first == flag; });
    if (foreign && command->get_option_no_throw(flag) == nullptr) return explain(*command, argument);
  }
  return std::nullopt;
}

std::string explain_extras(const CLI::App& app) {
  std::string out;
  const CLI::App* command = &app;
  for (const CLI::App* sub : app.get_subcommands()) command = sub;
  for (const std::string& extra : command->remaining()) {
    if (extra.rfind('-', 0) != 0 && !out.empty()) continue;  // a value of the flag just explained
    out += (out.empty() ? "" : "\n") + explain(*command, extra);
  }
  return out;
}

}  // namespace nanoserve::cli
