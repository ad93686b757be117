// Encode throughput of one tokenizer on one thread, its load time and a hash of the ids. Prints one
// JSON line.
// Usage: tokenizer_encode TOKENIZER_DIR TEXTS_JSONL (one {"text": ...} per line)
#include <fmt/format.h>

#include <algorithm>
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
    // As bench/tokenizer/hf_tokenizers.py does: the first 200 texts to warm up, then one timed pass.
    for (size_t i = 0; i < std::min<size_t>(200, texts.size()); ++i) tokenizer.encode(texts[i], false);
    std::vector<std::vector<int32_t>> encoded;
    encoded.reserve(texts.size());
    start = std::chrono::steady_clock::now();
    for (const auto& t : texts) encoded.push_back(tokenizer.encode(t, false));
    const double seconds = since(start);
    // The same polynomial hash of every id as hf_tokenizers.py: equal hashes say the ids are identical.
    size_t tokens = 0;
    uint64_t ids_hash = 0;
    for (const auto& ids : encoded) {
      tokens += ids.size();
      for (int32_t id : ids) ids_hash = ids_hash * 1000003 + static_cast<uint64_t>(id) + 1;
    }
    fmt::print("{}\n", nlohmann::json{{"load_ms", load_s * 1e3},
                                      {"bytes", bytes},
                                      {"tokens", tokens},
                                      {"ids_hash", std::to_string(ids_hash)},
                                      {"mb_per_s", static_cast<double>(bytes) / seconds / 1e6}}
                           .dump());
  } catch (const std::exception& e) {
    fmt::print(stderr, "error: {}\n", e.what());
    return 1;
  }
}
