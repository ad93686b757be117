#include "util/json_parse.h"

#include <gtest/gtest.h>

#include "test_support.h"
#include "util/error.h"

namespace nanoserve {
namespace {

std::string nested(int levels, const std::string& inner = "1") {
  return std::string(static_cast<size_t>(levels), '[') + inner + std::string(static_cast<size_t>(levels), ']');
}

std::string error_of(const std::string& text) {
  try {
    parse_json(text, "body");
  } catch (const Error& e) {
    return e.what();
  }
  return "(no error)";
}

// Issue 26: 120k levels of nesting in a request body overflowed the stack while the value was
// copied; 300k in config.json while an error message printed it. The parser now stops at 128.
TEST(JsonParse, NestingIsBoundedWhileParsing) {
  EXPECT_EQ(parse_json(nested(kMaxJsonDepth), "body").dump(), nested(kMaxJsonDepth));
  EXPECT_EQ(error_of(nested(kMaxJsonDepth + 1)), "body: nested deeper than 128 levels");
  EXPECT_EQ(error_of(nested(300000)), "body: nested deeper than 128 levels");
  EXPECT_EQ(error_of(R"({"a":)" + nested(200) + "}"), "body: nested deeper than 128 levels");
  std::string objects;
  for (int i = 0; i < 200; ++i) objects += R"({"k":)";
  EXPECT_EQ(error_of(objects + "1" + std::string(200, '}')), "body: nested deeper than 128 levels");
  // Brackets inside strings are text, not nesting.
  EXPECT_EQ(parse_json("[\"" + std::string(1000, '[') + "\"]", "body")[0].get<std::string>().size(), 1000u);
  EXPECT_EQ(parse_ordered_json(R"({"b":1,"a":2})", "body").dump(), R"({"b":1,"a":2})");
}

// An order-keeping object is a vector searched linearly; nlohmann's own builder searched it for
// every key, so the 10,000 keys before the bound cost 5.5 s under the sanitizers (a CI run, stop 41).
TEST(JsonParse, OrderedObjectsAreBoundedInKeysAndKeepTheFirstPlaceOfARepeatedKey) {
  std::string many = "{";
  for (size_t i = 0; i <= kMaxOrderedKeys; ++i) many += fmt::format("{}\"k{}\":{}", i ? "," : "", i, i);
  many += "}";
  try {
    parse_ordered_json(many, "body");
    FAIL();
  } catch (const Error& e) {
    EXPECT_STREQ(e.what(), "body: an object has more than 10000 keys");
  }
  // One key fewer is a value, in order; the unordered parse has no bound on keys.
  const size_t last = many.rfind(',');
  const auto fewer = parse_ordered_json(many.substr(0, last) + "}", "body");
  ASSERT_EQ(fewer.size(), kMaxOrderedKeys);
  EXPECT_EQ(fewer.begin().key(), "k0");
  EXPECT_EQ((--fewer.end()).key(), fmt::format("k{}", kMaxOrderedKeys - 1));
  EXPECT_EQ(parse_json(many, "body").size(), kMaxOrderedKeys + 1);
  // A repeated key keeps its first place and takes its last value, as nlohmann's builder does;
  // repeats do not count against the bound.
  EXPECT_EQ(parse_ordered_json(R"({"a":1,"b":[2,{"c":3,"c":4}],"a":{"d":5}})", "body").dump(),
            R"({"a":{"d":5},"b":[2,{"c":4}]})");
  EXPECT_EQ(parse_json(R"({"b":1,"a":2,"b":3})", "body").dump(), R"({"a":2,"b":3})");
  std::string repeated = "{";
  for (size_t i = 0; i < 3 * kMaxOrderedKeys; ++i) repeated += fmt::format("{}\"k{}\":{}", i ? "," : "", i % 7, i);
  EXPECT_EQ(parse_ordered_json(repeated + "}", "body").size(), 7u);
}

TEST(JsonParse, SyntaxErrorsNameTheSourceAndPlace) {
  EXPECT_EQ(error_of("{not json"),
            "body: not valid JSON: parse error at line 1, column 3: syntax error while parsing object key - invalid "
            "literal; last read: '{no'; expected string literal");
  EXPECT_EQ(error_of(""),
            "body: not valid JSON: parse error at line 1, column 1: syntax error while parsing value - "
            "unexpected end of input; expected '[', '{', or a literal");
  // Found by fuzz_chat_render: a number past the largest double is nlohmann's out_of_range, not a
  // parse_error, and escaped as an uncaught exception.
  EXPECT_EQ(error_of("[5e308]"), "body: not valid JSON: number overflow parsing '5e308'");
}

TEST(JsonParse, FilesAreBoundedToo) {
  const test::ScratchDir dir;
  test::write_file(dir.file("config.json"), R"({"hidden_size": )" + nested(300000) + "}");
  try {
    read_json_file(dir.file("config.json"));
    FAIL();
  } catch (const Error& e) {
    EXPECT_EQ(std::string(e.what()), dir.file("config.json") + ": nested deeper than 128 levels");
  }
  EXPECT_THROW(read_json_file(dir.file("missing.json")), Error);
}

TEST(JsonParse, IntegersAreCheckedNotConverted) {
  using nlohmann::json;
  EXPECT_EQ(json_integer(json(7), 0, 10, "n"), 7);
  EXPECT_EQ(json_integer(json(-3), -5, 10, "n"), -3);
  for (const json& bad :
       {json(11), json(-1), json(2.5), json(51e9), json("7"), json(nullptr), json(18446744073709551615ull)}) {
    EXPECT_THROW(json_integer(bad, 0, 10, "n"), Error) << bad.dump();
  }
  try {
    json_integer(json(1e300), 0, 10, "added token id");
    FAIL();
  } catch (const Error& e) {
    EXPECT_STREQ(e.what(), "added token id: expected an integer in [0, 10], got 1e+300");
  }
}

TEST(JsonParse, ExcerptsAreShort) {
  EXPECT_EQ(json_excerpt(nlohmann::json::parse("[1,2]")), "[1,2]");
  const auto long_value = nlohmann::json(std::string(1000, 'x'));
  EXPECT_EQ(json_excerpt(long_value, 10), "\"xxxxxxxxx... (1002 bytes)");
  // A cut never splits a character.
  EXPECT_EQ(json_excerpt(nlohmann::json("\u00e9\u00e9\u00e9"), 4), "\"\u00e9... (8 bytes)");
}

}  // namespace
}  // namespace nanoserve
