// 300 real-world JSON Schemas from JSONSchemaBench (tests/fixtures/jsonschemabench, MaskBench's
// format) through the compiler and matcher with the demo tokenizer: no invalid instance may be
// accepted, and at least 85% of the schemas must judge every instance right. Then text sampled
// under each grammar must parse and validate against its schema with valijson, an independent
// JSON Schema validator.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <random>
#include <sstream>
#include <valijson/adapters/nlohmann_json_adapter.hpp>
#include <valijson/schema.hpp>
#include <valijson/schema_parser.hpp>
#include <valijson/validator.hpp>

#include "grammar/json_schema.h"
#include "grammar/matcher.h"
#include "test_support.h"
#include "tokenizer/tokenizer.h"
#include "util/error.h"

namespace nanoserve::grammar {
namespace {

using Json = nlohmann::ordered_json;

struct Case {
  std::string name;
  Json doc;
};

std::vector<Case> cases() {
  std::vector<Case> out;
  for (const auto& entry : std::filesystem::directory_iterator(test::fixture("jsonschemabench"))) {
    if (entry.path().extension() != ".json") continue;
    std::ifstream in(entry.path());
    std::stringstream text;
    text << in.rdbuf();
    out.push_back({entry.path().filename().string(), Json::parse(text.str())});
  }
  std::sort(out.begin(), out.end(), [](const Case& a, const Case& b) { return a.name < b.name; });
  return out;
}

class MaskBench : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    tokenizer_ = new Tokenizer(Tokenizer::from_file(test::demo_model_dir()));
    trie_ = new std::shared_ptr<const TokenTrie>(TokenTrie::of(*tokenizer_));
  }
  static void TearDownTestSuite() {
    delete trie_;
    delete tokenizer_;
  }
  static bool accepted(const std::shared_ptr<const Grammar>& g, const Json& data) {
    Matcher m(g, *trie_);
    for (int32_t id : tokenizer_->encode(data.dump(), false, false)) {
      if (!m.allows(id)) return false;
      EXPECT_TRUE(m.accept(id));
    }
    return m.can_end();
  }
  static Tokenizer* tokenizer_;
  static std::shared_ptr<const TokenTrie>* trie_;
};
Tokenizer* MaskBench::tokenizer_ = nullptr;
std::shared_ptr<const TokenTrie>* MaskBench::trie_ = nullptr;

TEST_F(MaskBench, NoInvalidInstanceAcceptedAndMostSchemasPass) {
  const auto all = cases();
  ASSERT_EQ(all.size(), 300u);
  size_t passing = 0, compiled = 0;
  for (const Case& c : all) {
    std::shared_ptr<const Grammar> g;
    try {
      g = std::make_shared<const Grammar>(compile_json_schema(c.doc["schema"]));
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find("json schema"), std::string::npos) << c.name << ": " << e.what();
      continue;
    }
    ++compiled;
    bool all_right = true;
    for (const auto& t : c.doc["tests"]) {
      const bool ok = accepted(g, t["data"]);
      EXPECT_FALSE(ok && t["valid"] == false) << c.name << " accepted an invalid instance: " << t["data"].dump();
      all_right = all_right && ok == (t["valid"] == true);
    }
    passing += all_right;
  }
  EXPECT_GE(passing * 100, all.size() * 85) << passing << " of " << all.size() << " pass (" << compiled << " compiled)";
}

// A random walk through the allowed tokens, leaning towards tokens that close strings, objects and
// arrays so that most walks end; nullopt when one does not end within the budget.
std::optional<std::string> sample(Matcher& m, const Tokenizer& tokenizer, std::mt19937& rng) {
  std::string text;
  for (int step = 0; step < 400; ++step) {
    if (m.can_end() && (m.finished() || rng() % 3 == 0)) return text;
    const std::vector<uint64_t> bits = *m.allowed();
    std::vector<int32_t> allowed, closing;
    for (int32_t t = 0; t < tokenizer.vocab_size(); ++t) {
      if (!((bits[static_cast<size_t>(t) >> 6] >> (t & 63)) & 1)) continue;
      allowed.push_back(t);
      if (tokenizer.token_bytes(t, false).find_first_of("\"]},") != std::string::npos) closing.push_back(t);
    }
    if (allowed.empty()) return std::nullopt;
    const auto& pool = !closing.empty() && rng() % 5 < 3 ? closing : allowed;
    const int32_t token = pool[rng() % pool.size()];
    EXPECT_TRUE(m.accept(token));
    text += tokenizer.token_bytes(token, false);
  }
  return std::nullopt;
}

TEST_F(MaskBench, SampledTextValidatesWithValijson) {
  std::mt19937 rng(2024);
  size_t validated = 0;
  for (const Case& c : cases()) {
    std::shared_ptr<const Grammar> g;
    try {
      g = std::make_shared<const Grammar>(compile_json_schema(c.doc["schema"]));
    } catch (const Error&) {
      continue;
    }
    const nlohmann::json schema_json = nlohmann::json::parse(c.doc["schema"].dump());
    valijson::Schema schema;
    try {
      valijson::SchemaParser parser;
      valijson::adapters::NlohmannJsonAdapter adapter(schema_json);
      parser.populateSchema(adapter, schema);
    } catch (const std::exception&) {
      continue;  // a schema valijson cannot read (remote references)
    }
    for (int draw = 0; draw < 3; ++draw) {
      Matcher m(g, *trie_);
      const auto text = sample(m, *tokenizer_, rng);
      if (!text) continue;
      nlohmann::json instance;
      ASSERT_NO_THROW(instance = nlohmann::json::parse(*text)) << c.name << ": " << *text;
      valijson::Validator validator;
      valijson::ValidationResults results;
      valijson::adapters::NlohmannJsonAdapter target(instance);
      std::string why;
      if (!validator.validate(schema, target, &results)) {
        valijson::ValidationResults::Error error;
        while (results.popError(error)) why += error.description + "; ";
      }
      EXPECT_TRUE(why.empty()) << c.name << ": " << *text << "\n" << why;
      ++validated;
    }
  }
  EXPECT_GT(validated, 400u);
}

}  // namespace
}  // namespace nanoserve::grammar
