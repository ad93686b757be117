// nanoserve perplexity: the protocol of models/demo/MODEL_CARD.md. Documents are tokenized with BOS
// and followed by EOS, concatenated, and cut into non-overlapping windows; a window of W+1 tokens
// scores its W next-token predictions; the last partial window is dropped.
#include <fmt/format.h>

#include <cmath>
#include <fstream>
#include <nlohmann/json.hpp>

#include "cli/commands.h"
#include "cli/common.h"
#include "model/transformer.h"
#include "util/error.h"
#include "util/progress.h"

namespace nanoserve::cli {

namespace {

struct PerplexityOptions {
  ModelOptions model;
  std::string file;
  int window = 512;
};

std::vector<int32_t> read_documents(const std::string& path, const Tokenizer& tokenizer, int32_t eos) {
  std::ifstream in(path);
  if (!in) fail("{}: cannot open", path);
  std::vector<int32_t> stream;
  std::string line;
  for (int line_no = 1; std::getline(in, line); ++line_no) {
    if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
    auto doc = nlohmann::json::parse(line, nullptr, false);
    if (doc.is_discarded() || !doc.is_object() || !doc.contains("text") || !doc["text"].is_string()) {
      fail("{}:{}: expected a JSON object with a string field \"text\"", path, line_no);
    }
    auto ids = with_context(fmt::format("{}:{}", path, line_no), [&] { return tokenizer.encode(doc["text"].get<std::string>()); });
    stream.insert(stream.end(), ids.begin(), ids.end());
    stream.push_back(eos);
  }
  return stream;
}

// Sum over rows of -log softmax(logits[row])[target[row]].
double negative_log_likelihood(const std::vector<float>& logits, int64_t vocab, const int32_t* targets, int64_t rows) {
  double total = 0;
  for (int64_t r = 0; r < rows; ++r) {
    const float* row = logits.data() + r * vocab;
    const float max_logit = *std::max_element(row, row + vocab);
    double sum = 0;
    for (int64_t i = 0; i < vocab; ++i) sum += std::exp(static_cast<double>(row[i]) - max_logit);
    total += std::log(sum) + max_logit - row[targets[r]];
  }
  return total;
}

void run_perplexity(const PerplexityOptions& opt) {
  Model model = load(opt.model);
  Tokenizer tokenizer = load_tokenizer(opt.model);
  if (model.config.eos_token_ids.empty()) fail("the model defines no eos_token_id to end each document with");
  if (opt.window + 1 > model.config.max_positions) {
    fail("--window {} needs {} positions, more than the model's context of {}", opt.window, opt.window + 1,
         model.config.max_positions);
  }
  const auto stream = read_documents(opt.file, tokenizer, static_cast<int32_t>(model.config.eos_token_ids[0]));
  const int64_t window = opt.window, windows = (static_cast<int64_t>(stream.size()) - 1) / window;
  if (windows < 1) fail("{}: {} tokens, fewer than one window of {}", opt.file, stream.size(), window + 1);
  Transformer transformer(model);
  SequenceCache cache = transformer.new_cache(window + 1);
  double nll = 0;
  const auto start = std::chrono::steady_clock::now();
  {
    ProgressBar bar("scoring", static_cast<uint64_t>(windows));
    for (int64_t w = 0; w < windows; ++w) {
      cache.clear();
      std::span<const int32_t> tokens(stream.data() + w * window, static_cast<size_t>(window + 1));
      const auto logits = transformer.forward(tokens, cache, LogitsFor::AllTokens);
      nll += negative_log_likelihood(logits, model.config.vocab_size, tokens.data() + 1, window);
      bar.advance(1);
    }
  }
  const double seconds = seconds_since(start);
  const int64_t scored = windows * window;
  fmt::print("windows {}, tokens scored {}, nll {:.5f}, ppl {:.3f}\n", windows, scored, nll / scored,
             std::exp(nll / scored));
  fmt::print(stderr, "{:.1f}s, {:.0f} tok/s\n", seconds, static_cast<double>(windows * (window + 1)) / seconds);
}

}  // namespace

void register_perplexity(CLI::App& app) {
  auto opt = std::make_shared<PerplexityOptions>();
  CLI::App* cmd = app.add_subcommand("perplexity", "Perplexity over a JSONL file of {\"text\": ...} documents");
  add_model_options(*cmd, opt->model);
  cmd->add_option("--file", opt->file, "JSONL file, one {\"text\": ...} document per line")->required();
  cmd->add_option("--window", opt->window, "tokens scored per window (default 512)")->check(CLI::PositiveNumber);
  cmd->callback([opt] { run_perplexity(*opt); });
}

}  // namespace nanoserve::cli
