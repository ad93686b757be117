// What a user typed wrong on the command line, said so that the fix is in the message: the nearest
// subcommand or flag to a mistyped one, the nanoserve spelling of another engine's flag, and -m for
// a model given as a bare argument.
#pragma once

#include <CLI/CLI.hpp>
#include <optional>
#include <string>

namespace nanoserve::cli {

// Before parsing: a first argument that is neither a flag nor a subcommand. The message to print.
std::optional<std::string> unknown_subcommand(const CLI::App& app, int argc, char** argv);

// Before parsing: another engine's flag given to a subcommand that does not take it (checked first,
// so that its value is not taken for a positional argument). The message to print.
std::optional<std::string> foreign_flag(const CLI::App& app, int argc, char** argv);

// After CLI11 refused arguments it did not expect (CLI::ExtrasError): what each one was meant to be.
std::string explain_extras(const CLI::App& app);

}  // namespace nanoserve::cli
