// Encode throughput of one tokenizer on one thread, and its load time. Prints one JSON line.
// Usage: tokenizer_encode TOKENIZER_DIR TEXTS_JSONL (one {"text": ...} per line)
#include <fmt/format.h>

#include <chrono>
#include <fstream>
#include <nlohmann/json.hpp>

#include "tokenizer/tokenizer.h"

namespace {
double since(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}
}  // namespace

int main(int argc, char** argv) {
  if (argc != 3) {
    fmt::print(stderr, "usage: {} TOKENIZER_DIR TEXTS_JSONL\n", argv[0]);
    return 2;
  }
  try {
    std::vector<std::string> texts;
    size_t bytes = 0;
    std::ifstream in(argv[2]);
    for (std::string line; std::getline(in, line);) {
      texts.push_back(nlohmann::json::parse(line).at("text").get<std::string>());
      bytes += texts.back().size();
    }
    auto start = std::chrono::steady_clock::now();
    const auto tokenizer = nanoserve::Tokenizer::from_file(argv[1]);
    const double load_s = since(start);
    // Passes over the whole text until a second has gone by; the first pass warms the caches.
    size_t tokens = 0, passes = 0;
    for (const auto& t : texts) tokens += tokenizer.encode(t, false).size();
    start = std::chrono::steady_clock::now();
    do {
      for (const auto& t : texts) tokenizer.encode(t, false);
      ++passes;
    } while (since(start) < 1.0);
    const double seconds = since(start) / static_cast<double>(passes);
    fmt::print("{}\n", nlohmann::json{{"load_ms", load_s * 1e3}, {"bytes", bytes}, {"tokens", tokens},
                                      {"mb_per_s", static_cast<double>(bytes) / seconds / 1e6}}
                           .dump());
  } catch (const std::exception& e) {
    fmt::print(stderr, "error: {}\n", e.what());
    return 1;
  }
}
