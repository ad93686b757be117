// nanoserve tokenize / detokenize: text on stdin to token ids as a JSON array on stdout, and back;
// nanoserve chat-template: a conversation (JSON) on stdin to the prompt the model would see. With
// --jsonl, one document per line. -m may name a directory that holds only tokenizer files.
#include <fmt/format.h>

#include <iostream>
#include <iterator>
#include <nlohmann/json.hpp>

#include "cli/commands.h"
#include "cli/common.h"
#include "tokenizer/chat_prompt.h"
#include "util/error.h"
#include "util/json_parse.h"

namespace nanoserve::cli {

namespace {

struct TokenizeOptions {
  ModelOptions model;
  bool no_special = false;       // tokenize: no BOS/EOS from the post-processor; detokenize: drop special tokens
  bool special_as_text = false;  // tokenize: "<|eot_id|>" in the text is ordinary text, not the control token
  bool jsonl = false;            // one JSON document per line in and out, for many texts at once
};

std::string read_stdin() { return {std::istreambuf_iterator<char>(std::cin), std::istreambuf_iterator<char>()}; }

// Runs convert on stdin as a whole, or with --jsonl on each line, naming the line in errors.
template <typename Convert>
void for_each_input(bool jsonl, Convert convert) {
  if (!jsonl) return convert(read_stdin());
  std::string line;
  for (int64_t line_no = 1; std::getline(std::cin, line); ++line_no) {
    with_context(fmt::format("stdin:{}", line_no), [&] { convert(line); });
  }
}

// Ordered: a conversation reaches the chat template with its keys as written.
nlohmann::ordered_json parse_json(const std::string& text, const char* expected) {
  return parse_ordered_json(text, fmt::format("expected {}", expected));
}

// Text on stdout: as is, or with --jsonl as one JSON string per line (invalid UTF-8 as U+FFFD).
void print_text(const std::string& text, bool jsonl) {
  if (!jsonl) return fmt::print("{}", text);
  fmt::print("{}\n", nlohmann::json(text).dump(-1, ' ', false, nlohmann::json::error_handler_t::replace));
}

void run_tokenize(const TokenizeOptions& opt) {
  const Tokenizer tokenizer = load_tokenizer(opt.model);
  for_each_input(opt.jsonl, [&](const std::string& input) {
    std::string text = input;
    if (opt.jsonl) {
      const auto j = parse_json(input, "a JSON string");
      if (!j.is_string()) fail("expected a JSON string, got {}", j.type_name());
      text = j.get<std::string>();
    }
    const auto ids = tokenizer.encode(text, /*add_special=*/!opt.no_special, /*parse_special=*/!opt.special_as_text);
    fmt::print("{}\n", nlohmann::json(ids).dump());
  });
}

void run_detokenize(const TokenizeOptions& opt) {
  const Tokenizer tokenizer = load_tokenizer(opt.model);
  for_each_input(opt.jsonl, [&](const std::string& input) {
    const auto j = parse_json(input, "a JSON array of token ids");
    if (!j.is_array()) fail("expected a JSON array of token ids, got {}", j.type_name());
    std::vector<int32_t> ids;
    for (size_t i = 0; i < j.size(); ++i) {
      if (!j[i].is_number_integer() || j[i].get<int64_t>() < 0 || j[i].get<int64_t>() >= tokenizer.vocab_size()) {
        fail("element {} ({}) is not a token id of this vocabulary ({} tokens)", i, json_excerpt(j[i]),
             tokenizer.vocab_size());
      }
      ids.push_back(j[i].get<int32_t>());
    }
    print_text(tokenizer.decode(ids, /*skip_special=*/opt.no_special), opt.jsonl);
  });
}

struct ChatTemplateOptions {
  ModelOptions model;
  bool parse_special = false;
  bool ids = false;
  bool jsonl = false;
};

// stdin: {"messages": [...], "tools": [...], "add_generation_prompt": true, ...any template variable}.
void run_chat_template(const ChatTemplateOptions& opt) {
  const ChatTemplate chat_template = require_chat_template(opt.model);
  const Tokenizer tokenizer = load_tokenizer(opt.model);
  for_each_input(opt.jsonl, [&](const std::string& input) {
    auto context = parse_json(input, "a JSON object with \"messages\"");
    if (!context.is_object() || !context.contains("messages")) fail("expected a JSON object with \"messages\"");
    const ChatPrompt prompt = encode_chat(chat_template, tokenizer, std::move(context), opt.parse_special);
    if (opt.ids) {
      fmt::print("{}\n", nlohmann::json(prompt.ids).dump());
    } else {
      print_text(prompt.text, opt.jsonl);
    }
  });
}

}  // namespace

void register_tokenize(CLI::App& app) {
  auto opt = std::make_shared<TokenizeOptions>();
  CLI::App* cmd = app.add_subcommand("tokenize", "Read text on stdin, print its token ids as a JSON array");
  add_model_options(*cmd, opt->model);
  cmd->add_flag("--no-special", opt->no_special, "do not add the special tokens the tokenizer adds (e.g. BOS)");
  cmd->add_flag("--special-as-text", opt->special_as_text,
                "tokenize special-token text such as <|eot_id|> as ordinary text, not as the control token");
  cmd->add_flag("--jsonl", opt->jsonl, "read one JSON string per line, print one JSON array per line");
  cmd->callback([opt] { run_tokenize(*opt); });

  auto dopt = std::make_shared<TokenizeOptions>();
  CLI::App* dcmd = app.add_subcommand("detokenize", "Read a JSON array of token ids on stdin, print their text");
  add_model_options(*dcmd, dopt->model);
  dcmd->add_flag("--no-special", dopt->no_special,
                 "drop special tokens from the text (by default they are kept, as POST /detokenize keeps them)");
  dcmd->add_flag("--jsonl", dopt->jsonl, "read one JSON array of ids per line, print one JSON string per line");
  dcmd->callback([dopt] { run_detokenize(*dopt); });

  auto topt = std::make_shared<ChatTemplateOptions>();
  CLI::App* tcmd = app.add_subcommand(
      "chat-template",
      "Render the chat template for a conversation on stdin: {\"messages\": [...], \"tools\": [...], "
      "\"add_generation_prompt\": true}");
  add_model_options(*tcmd, topt->model);
  add_chat_template_option(*tcmd, topt->model);
  tcmd->add_flag("--ids", topt->ids, "print the prompt's token ids instead of its text");
  tcmd->add_flag("--parse-special", topt->parse_special,
                 "special-token text inside messages becomes control tokens (by default it stays text)");
  tcmd->add_flag("--jsonl", topt->jsonl, "one conversation per line in, one JSON string (or id array) per line out");
  tcmd->callback([topt] { run_chat_template(*topt); });
}

}  // namespace nanoserve::cli
