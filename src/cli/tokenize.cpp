// nanoserve tokenize / detokenize: text on stdin to token ids as a JSON array on stdout, and back.
// -m may name a directory that holds only tokenizer files.
#include <fmt/format.h>

#include <iostream>
#include <iterator>
#include <nlohmann/json.hpp>

#include "cli/commands.h"
#include "cli/common.h"
#include "util/error.h"

namespace nanoserve::cli {

namespace {

struct TokenizeOptions {
  ModelOptions model;
  bool no_special = false;  // tokenize: no BOS/EOS from the post-processor; detokenize: keep special tokens
};

std::string read_stdin() { return {std::istreambuf_iterator<char>(std::cin), std::istreambuf_iterator<char>()}; }

void run_tokenize(const TokenizeOptions& opt) {
  const Tokenizer tokenizer = load_tokenizer(opt.model);
  fmt::print("{}\n", nlohmann::json(tokenizer.encode(read_stdin(), /*add_special=*/!opt.no_special)).dump());
}

void run_detokenize(const TokenizeOptions& opt) {
  const Tokenizer tokenizer = load_tokenizer(opt.model);
  const auto j = nlohmann::json::parse(read_stdin(), nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded() || !j.is_array()) fail("stdin: expected a JSON array of token ids");
  std::vector<int32_t> ids;
  for (size_t i = 0; i < j.size(); ++i) {
    if (!j[i].is_number_integer() || j[i].get<int64_t>() < 0 || j[i].get<int64_t>() >= tokenizer.vocab_size()) {
      fail("stdin: element {} ({}) is not a token id of this vocabulary ({} tokens)", i, j[i].dump(), tokenizer.vocab_size());
    }
    ids.push_back(j[i].get<int32_t>());
  }
  fmt::print("{}", tokenizer.decode(ids, /*skip_special=*/!opt.no_special));
}

}  // namespace

void register_tokenize(CLI::App& app) {
  auto opt = std::make_shared<TokenizeOptions>();
  CLI::App* cmd = app.add_subcommand("tokenize", "Read text on stdin, print its token ids as a JSON array");
  add_model_options(*cmd, opt->model);
  cmd->add_flag("--no-special", opt->no_special, "do not add the special tokens the tokenizer adds (e.g. BOS)");
  cmd->callback([opt] { run_tokenize(*opt); });

  auto dopt = std::make_shared<TokenizeOptions>();
  CLI::App* dcmd = app.add_subcommand("detokenize", "Read a JSON array of token ids on stdin, print their text");
  add_model_options(*dcmd, dopt->model);
  dcmd->add_flag("--no-special", dopt->no_special, "keep special tokens in the text instead of dropping them");
  dcmd->callback([dopt] { run_detokenize(*dopt); });
}

}  // namespace nanoserve::cli
