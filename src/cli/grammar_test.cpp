// nanoserve grammar-test: JSON Schema test files in MaskBench's format ({"schema", "tests": [{"valid",
// "data"}]}) through the grammar compiler and matcher, token by token with the model's tokenizer, as
// a test and a benchmark of structured output. One JSON line per file, then a summary line.
#include <fmt/format.h>

#include <algorithm>
#include <chrono>
#include <optional>
#include <nlohmann/json.hpp>

#include "cli/commands.h"
#include "cli/common.h"
#include "grammar/json_schema.h"
#include "grammar/matcher.h"
#include "util/error.h"
#include "util/json_parse.h"

namespace nanoserve::cli {
namespace {

using Clock = std::chrono::steady_clock;
using Json = nlohmann::ordered_json;

double micros_since(Clock::time_point start) {
  return std::chrono::duration<double, std::micro>(Clock::now() - start).count();
}

struct GrammarTestOptions {
  ModelOptions model;
  std::vector<std::string> files;
  bool cold = false;  // each instance its own automaton: no masks cached from the schema's other instances
};

struct Totals {
  int64_t files = 0, compiled = 0, passing = 0, tests = 0, invalid_accepted = 0, valid_rejected = 0, tokens = 0;
  std::vector<double> mask_us, compile_us;
};

// Whether the instance's compact JSON is accepted, token by token; each mask's time goes to mask_us.
bool walk(const std::shared_ptr<const grammar::Grammar>& g, const std::shared_ptr<const grammar::TokenTrie>& trie,
          const Tokenizer& tokenizer, const Json& data, bool cold, std::vector<double>& mask_us, int64_t& tokens) {
  grammar::Matcher matcher(g, trie, cold);
  const auto ids = tokenizer.encode(data.dump(), /*add_special=*/false, /*parse_special=*/false);
  for (int32_t id : ids) {
    const auto start = Clock::now();
    const bool allowed = matcher.allows(id);
    mask_us.push_back(micros_since(start));
    ++tokens;
    if (!allowed) return false;
    if (!matcher.accept(id)) throw Error(fmt::format("token {} is in the mask but the matcher refused it", id));
  }
  return matcher.can_end();
}

void run_file(const std::string& path, const Tokenizer& tokenizer,
              const std::shared_ptr<const grammar::TokenTrie>& trie, bool cold, Totals& totals) {
  Json out = {{"file", path}, {"compiled", false}, {"error", nullptr}};
  const Json doc = read_ordered_json_file(path);
  if (!doc.is_object() || !doc.contains("schema") || !doc.contains("tests") || !doc["tests"].is_array()) {
    fail("{}: expected MaskBench's format, an object with \"schema\" and \"tests\"", path);
  }
  ++totals.files;
  std::shared_ptr<const grammar::Grammar> g;
  std::optional<grammar::Matcher> first;
  const auto start = Clock::now();
  try {
    g = std::make_shared<const grammar::Grammar>(grammar::compile_json_schema(doc["schema"]));
    // Time to the first mask, as MaskBench counts compilation. The first matcher stays alive, so
    // that (unless --cold) the instances share its automaton as a server's requests do.
    first.emplace(g, trie, cold);
    first->allowed();
  } catch (const Error& e) {
    out["error"] = e.what();
  }
  const double compile_us = micros_since(start);
  out["compile_us"] = std::round(compile_us);
  std::vector<double> mask_us;
  int64_t tokens = 0;
  bool all_right = g != nullptr;
  if (g) {
    out["compiled"] = true;
    ++totals.compiled;
    totals.compile_us.push_back(compile_us);
    Json accepted = Json::array();
    for (const auto& test : doc["tests"]) {
      bool ok = false;
      try {
        ok = walk(g, trie, tokenizer, test["data"], cold, mask_us, tokens);
      } catch (const Error& e) {  // a bound reached while matching: this file's error, the run goes on
        out["error"] = fmt::format("instance {}: {}", accepted.size(), e.what());
        all_right = false;
        break;
      }
      accepted.push_back(ok);
      const bool valid = test.contains("valid") && test["valid"] == true;
      ++totals.tests;
      if (ok && !valid) ++totals.invalid_accepted;
      if (!ok && valid) ++totals.valid_rejected;
      all_right = all_right && ok == valid;
    }
    out["accepted"] = accepted;
  }
  totals.passing += all_right;
  totals.tokens += tokens;
  out["tokens"] = tokens;
  out["mask_us"] = {std::round(percentile(mask_us, 0.5) * 10) / 10, std::round(percentile(mask_us, 0.99) * 10) / 10,
                    std::round(percentile(mask_us, 1.0) * 10) / 10};
  totals.mask_us.insert(totals.mask_us.end(), mask_us.begin(), mask_us.end());
  fmt::print("{}\n", out.dump());
}

void run_grammar_test(const GrammarTestOptions& opt) {
  const Tokenizer tokenizer = load_tokenizer(opt.model);
  const auto trie = grammar::TokenTrie::of(tokenizer);
  Totals totals;
  for (const auto& file : opt.files) run_file(file, tokenizer, trie, opt.cold, totals);
  double mean = 0;
  for (double v : totals.mask_us) mean += v;
  if (!totals.mask_us.empty()) mean /= static_cast<double>(totals.mask_us.size());
  const Json summary = {{"summary", true},
                        {"files", totals.files},
                        {"compiled", totals.compiled},
                        {"passing", totals.passing},
                        {"tests", totals.tests},
                        {"invalid_accepted", totals.invalid_accepted},
                        {"valid_rejected", totals.valid_rejected},
                        {"tokens", totals.tokens},
                        {"mask_us_mean", std::round(mean * 10) / 10},
                        {"mask_us_p50", percentile(totals.mask_us, 0.5)},
                        {"mask_us_p99", percentile(totals.mask_us, 0.99)},
                        {"compile_us_p50", percentile(totals.compile_us, 0.5)},
                        {"compile_us_p99", percentile(totals.compile_us, 0.99)}};
  fmt::print("{}\n", summary.dump());
}

}  // namespace

void register_grammar_test(CLI::App& app) {
  auto opt = std::make_shared<GrammarTestOptions>();
  CLI::App* cmd = app.add_subcommand(
      "grammar-test", "Check JSON Schema test files (MaskBench format) token by token against the grammar matcher");
  add_model_options(*cmd, opt->model);
  cmd->add_option("files", opt->files,
                  "MaskBench files: {\"schema\": ..., \"tests\": [{\"valid\": bool, \"data\": ...}]}")
      ->required()
      ->check(CLI::ExistingFile);
  cmd->add_flag(
      "--cold", opt->cold,
      "give each test instance its own automaton (by default a schema's instances share one, as requests do)");
  cmd->callback([opt] { run_grammar_test(*opt); });
}

}  // namespace nanoserve::cli
