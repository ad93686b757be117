// nanoserve perplexity, by one of two protocols:
// --file (JSONL), that of models/demo/MODEL_CARD.md: documents are tokenized with BOS and followed
//   by EOS, concatenated, and cut into non-overlapping windows; a window of W+1 tokens scores its W
//   next-token predictions; the last partial window is dropped.
// --text (plain text), llama.cpp's llama-perplexity: the whole text is tokenized once, cut into
//   chunks of C tokens whose first token becomes BOS (when the tokenizer adds one), and each chunk
//   scores the predictions of its second half only (positions C/2 .. C-2), so every scored token
//   has at least C/2 tokens of context; the last partial chunk is dropped.
#include <fmt/format.h>

#include <cmath>
#include <fstream>
#include <nlohmann/json.hpp>

#include "cli/checks.h"
#include "cli/commands.h"
#include "cli/common.h"
#include "cli/sampling_options.h"
#include "model/transformer.h"
#include "util/error.h"
#include "util/json_parse.h"
#include "util/progress.h"

namespace nanoserve::cli {

namespace {

struct PerplexityOptions {
  ModelOptions model;
  std::string file, text;
  int window = 512;
  int context = 512;
  std::optional<KvDType> kv_dtype;  // unset: default_kv_dtype
};

// Token windows and which of their predictions count.
struct Windows {
  std::vector<int32_t> stream;
  int64_t length = 0;          // tokens per window
  int64_t step = 0;            // from one window's start to the next
  int64_t first = 0;           // the first scored prediction (it predicts token first + 1)
  std::optional<int32_t> bos;  // replaces each window's first token
  int64_t count() const { return (static_cast<int64_t>(stream.size()) - (length - step)) / step; }
};

std::vector<int32_t> read_documents(const std::string& path, const Tokenizer& tokenizer, int32_t eos) {
  std::ifstream in(path);
  if (!in) fail("{}: cannot open", path);
  std::vector<int32_t> stream;
  std::string line;
  for (int line_no = 1; std::getline(in, line); ++line_no) {
    if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
    const auto doc = parse_json(line, fmt::format("{}:{}", path, line_no));
    if (!doc.is_object() || !doc.contains("text") || !doc["text"].is_string()) {
      fail("{}:{}: expected a JSON object with a string field \"text\"", path, line_no);
    }
    auto ids = with_context(fmt::format("{}:{}", path, line_no),
                            [&] { return tokenizer.encode(doc["text"].get<std::string>()); });
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

Windows document_windows(const PerplexityOptions& opt, const Model& model, const Tokenizer& tokenizer) {
  if (model.config.eos_token_ids.empty()) fail("the model defines no eos_token_id to end each document with");
  Windows w;
  w.stream = read_documents(opt.file, tokenizer, static_cast<int32_t>(model.config.eos_token_ids[0]));
  w.length = opt.window + 1;
  w.step = opt.window;
  return w;
}

Windows text_chunks(const PerplexityOptions& opt, const Tokenizer& tokenizer) {
  std::ifstream in(opt.text, std::ios::binary);
  if (!in) fail("{}: cannot open", opt.text);
  const std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  Windows w;
  w.stream = with_context(opt.text, [&] { return tokenizer.encode(text); });
  w.length = w.step = opt.context;
  w.first = opt.context / 2;
  const auto specials = tokenizer.encode("");
  if (!specials.empty() && !w.stream.empty() && w.stream[0] == specials[0]) w.bos = specials[0];
  return w;
}

void run_perplexity(const PerplexityOptions& opt) {
  if (opt.file.empty() == opt.text.empty()) fail("give one of --file (JSONL documents) or --text (plain text)");
  Model model = load(opt.model);
  Tokenizer tokenizer = load_tokenizer(opt.model);
  const Windows w = opt.text.empty() ? document_windows(opt, model, tokenizer) : text_chunks(opt, tokenizer);
  const std::string& source = opt.text.empty() ? opt.file : opt.text;
  if (w.length > model.config.max_positions) {
    fail("windows of {} tokens need more positions than the model's context of {}", w.length,
         model.config.max_positions);
  }
  const int64_t windows = w.count(), scored_per_window = w.length - 1 - w.first;
  if (windows < 1) fail("{}: {} tokens, fewer than one window of {}", source, w.stream.size(), w.length);
  const auto backend = open_backend(opt.model, model);
  Transformer transformer(model, backend.get());
  SequenceCache cache = transformer.new_cache(w.length, opt.kv_dtype.value_or(default_kv_dtype(*backend, model)));
  double nll = 0;
  const auto start = std::chrono::steady_clock::now();
  {
    ProgressBar bar("scoring", static_cast<uint64_t>(windows));
    std::vector<int32_t> tokens(static_cast<size_t>(w.length));
    for (int64_t i = 0; i < windows; ++i) {
      cache.clear();
      std::copy_n(w.stream.begin() + i * w.step, w.length, tokens.begin());
      if (w.bos) tokens[0] = *w.bos;
      const auto logits = transformer.forward(tokens, cache, LogitsFor::AllTokens);
      const std::vector<float> scored(logits.begin() + w.first * model.config.vocab_size,
                                      logits.end() - model.config.vocab_size);
      nll += negative_log_likelihood(scored, model.config.vocab_size, tokens.data() + w.first + 1, scored_per_window);
      bar.advance(1);
    }
  }
  const double seconds = seconds_since(start);
  const int64_t scored = windows * scored_per_window;
  fmt::print("windows {}, tokens scored {}, nll {:.5f}, ppl {:.3f}\n", windows, scored, nll / scored,
             std::exp(nll / scored));
  fmt::print(stderr, "{:.1f}s, {:.0f} tok/s, peak memory {:.1f} MiB\n", seconds,
             static_cast<double>(windows * w.length) / seconds, peak_memory_mib());
}

}  // namespace

void register_perplexity(CLI::App& app) {
  auto opt = std::make_shared<PerplexityOptions>();
  CLI::App* cmd =
      app.add_subcommand("perplexity", "Perplexity over JSONL documents (--file) or a plain text file (--text)");
  add_model_options(*cmd, opt->model);
  cmd->add_option("--file", opt->file,
                  "JSONL file, one {\"text\": ...} document per line: each document gets BOS and EOS, windows of "
                  "--window + 1 tokens score every prediction (models/demo/MODEL_CARD.md)");
  cmd->add_option("--text", opt->text,
                  "plain text file, scored as llama.cpp's llama-perplexity does: chunks of --context tokens starting "
                  "with BOS, each scoring the predictions of its second half");
  cmd->add_option("--window", opt->window, "--file: tokens scored per window (default 512)")->check(positive());
  cmd->add_option("--context", opt->context, "--text: tokens per chunk (default 512)")->check(between(4, 1 << 20));
  add_kv_dtype_option(*cmd, opt->kv_dtype);
  cmd->callback([opt] { run_perplexity(*opt); });
}

}  // namespace nanoserve::cli
