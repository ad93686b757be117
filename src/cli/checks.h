// Checks for numeric flags whose failures read as sentences ("--kv-cache-memory: -1 is not a
// positive number"), where CLI11's own ranges print DBL_MAX in full; and the nearest of a set of
// names, for "did you mean" on a mistyped subcommand or flag.
#pragma once

#include <CLI/CLI.hpp>
#include <string>
#include <vector>

namespace nanoserve::cli {

CLI::Validator positive();                        // > 0
CLI::Validator non_negative();                    // >= 0
CLI::Validator between(double low, double high);  // [low, high]

// The candidate closest to `word` by edit distance, if it is close enough to be a typo (at most a
// third of its letters wrong); empty otherwise.
std::string nearest(const std::string& word, const std::vector<std::string>& candidates);

}  // namespace nanoserve::cli
