// The tokenizer.json components one by one, on the examples Hugging Face's documentation gives.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "tokenizer/added_tokens.h"
#include "tokenizer/decoder.h"
#include "tokenizer/normalizer.h"
#include "tokenizer/pre_tokenizer.h"
#include "util/error.h"
#include "util/utf8.h"

namespace nanoserve {
namespace {

using json = nlohmann::json;
using Pieces = std::vector<std::string>;

Pieces pre_tokenize(const json& config, const std::string& text, bool at_text_start = true) {
  Pieces pieces{text};
  make_pre_tokenizer(config)->split(pieces, at_text_start);
  return pieces;
}

std::string normalize(const json& config, const std::string& text) { return make_normalizer(config)->normalize(text); }

std::string decode(const json& config, std::vector<std::string> tokens) {
  make_decoder(config)->decode_chain(tokens);
  std::string out;
  for (const auto& t : tokens) out += t;
  return out;
}

json split_on_dash(const char* behavior) {
  return {{"type", "Split"}, {"pattern", {{"String", "-"}}}, {"behavior", behavior}, {"invert", false}};
}

// The SplitDelimiterBehavior examples of the tokenizers documentation.
TEST(PreTokenizer, SplitBehaviors) {
  const std::string text = "the-final--countdown";
  EXPECT_EQ(pre_tokenize(split_on_dash("Removed"), text), (Pieces{"the", "final", "countdown"}));
  EXPECT_EQ(pre_tokenize(split_on_dash("Isolated"), text), (Pieces{"the", "-", "final", "-", "-", "countdown"}));
  EXPECT_EQ(pre_tokenize(split_on_dash("MergedWithPrevious"), text), (Pieces{"the-", "final-", "-", "countdown"}));
  EXPECT_EQ(pre_tokenize(split_on_dash("MergedWithNext"), text), (Pieces{"the", "-final", "-", "-countdown"}));
  EXPECT_EQ(pre_tokenize(split_on_dash("Contiguous"), text), (Pieces{"the", "-", "final", "--", "countdown"}));
  EXPECT_THROW(pre_tokenize(split_on_dash("Sideways"), text), Error);
}

TEST(PreTokenizer, InvertedSplitKeepsTheMatches) {
  const json split = {{"type", "Split"}, {"pattern", {{"Regex", "\\w+"}}}, {"behavior", "Removed"}, {"invert", true}};
  EXPECT_EQ(pre_tokenize(split, "Hey friend!  how"), (Pieces{"Hey", "friend", "how"}));
}

TEST(PreTokenizer, MetaspacePrependsAndSplits) {
  const json always = {{"type", "Metaspace"}, {"replacement", "▁"}, {"prepend_scheme", "always"}, {"split", true}};
  EXPECT_EQ(pre_tokenize(always, "Hey friend"), (Pieces{"▁Hey", "▁friend"}));
  EXPECT_EQ(pre_tokenize(always, "Hey friend", false), (Pieces{"▁Hey", "▁friend"}));
  const json first = {{"type", "Metaspace"}, {"replacement", "▁"}, {"prepend_scheme", "first"}, {"split", false}};
  EXPECT_EQ(pre_tokenize(first, "Hey friend"), (Pieces{"▁Hey▁friend"}));
  EXPECT_EQ(pre_tokenize(first, "Hey friend", /*at_text_start=*/false), (Pieces{"Hey▁friend"}));
}

TEST(PreTokenizer, DigitsAndWhitespace) {
  EXPECT_EQ(pre_tokenize({{"type", "Digits"}, {"individual_digits", true}}, "ab123"), (Pieces{"ab", "1", "2", "3"}));
  EXPECT_EQ(pre_tokenize({{"type", "Digits"}, {"individual_digits", false}}, "ab123c4"),
            (Pieces{"ab", "123", "c", "4"}));
  EXPECT_EQ(pre_tokenize({{"type", "Whitespace"}}, "Hey man!! ok?"), (Pieces{"Hey", "man", "!!", "ok", "?"}));
  EXPECT_EQ(pre_tokenize({{"type", "WhitespaceSplit"}}, "Hey man!!\tok?"), (Pieces{"Hey", "man!!", "ok?"}));
}

TEST(Normalizer, UnicodeFormsLowercaseAndSentencePieceSpaces) {
  EXPECT_EQ(normalize({{"type", "NFC"}}, "e\u0301"), "\u00e9");
  EXPECT_EQ(normalize({{"type", "NFD"}}, "\u00e9"), "e\u0301");
  EXPECT_EQ(normalize({{"type", "NFKC"}}, "\ufb01 \u2460 \uff21"), "fi 1 A");
  EXPECT_EQ(normalize({{"type", "Lowercase"}}, "ÀÉÎ HELLO Σ"), "àéî hello σ");
  const json llama2 = {{"type", "Sequence"},
                       {"normalizers",
                        {{{"type", "Prepend"}, {"prepend", "▁"}},
                         {{"type", "Replace"}, {"pattern", {{"String", " "}}}, {"content", "▁"}}}}};
  EXPECT_EQ(normalize(llama2, "Hello big world"), "▁Hello▁big▁world");
  EXPECT_EQ(normalize(llama2, ""), "");  // Prepend leaves empty text empty
  EXPECT_EQ(normalize({{"type", "Strip"}, {"strip_left", true}, {"strip_right", false}}, "  a b  "), "a b  ");
  EXPECT_THROW(normalize({{"type", "BertNormalizer"}}, "x"), Error);
}

// Found as a hostile tokenizer.json (issue 26): twelve chained Replace steps, each a -> 16 a's,
// grew memory at 300 MB/s until the process was killed. The normalized text is now bounded by
// Normalizer::kMaxGrowth times the input, and no step builds more than that.
TEST(Normalizer, ExpansionIsBounded) {
  json steps = json::array();
  for (int i = 0; i < 12; ++i)
    steps.push_back({{"type", "Replace"}, {"pattern", {{"String", "a"}}}, {"content", std::string(16, 'a')}});
  const json chain = {{"type", "Sequence"}, {"normalizers", steps}};
  EXPECT_EQ(normalize(chain, ""), "");
  try {
    normalize(chain, std::string(1000, 'a'));
    FAIL() << "the text grew 16^12 times";
  } catch (const Error& e) {
    EXPECT_STREQ(e.what(), "tokenizer normalizer: replacing every match makes the text longer than 36096 bytes");
  }
  // One step that expands a megabyte input a thousand times stops at the bound, not after.
  const json wide = {{"type", "Replace"}, {"pattern", {{"String", "b"}}}, {"content", std::string(1000, 'b')}};
  EXPECT_THROW(normalize(wide, std::string(1 << 20, 'b')), Error);
  EXPECT_THROW(normalize({{"type", "Prepend"}, {"prepend", std::string(5000, 'p')}}, "x"), Error);
  // Growth within the bound is as before: two steps of 4x.
  const json twice = {{"type", "Sequence"},
                      {"normalizers",
                       {{{"type", "Replace"}, {"pattern", {{"String", "a"}}}, {"content", "aaaa"}},
                        {{"type", "Replace"}, {"pattern", {{"String", "a"}}}, {"content", "aaaa"}}}}};
  EXPECT_EQ(normalize(twice, "ab"), std::string(16, 'a') + "b");
}

const json kSentencePieceDecoder = {{"type", "Sequence"},
                                    {"decoders",
                                     {{{"type", "Replace"}, {"pattern", {{"String", "▁"}}}, {"content", " "}},
                                      {{"type", "ByteFallback"}},
                                      {{"type", "Fuse"}},
                                      {{"type", "Strip"}, {"content", " "}, {"start", 1}, {"stop", 0}}}}};

TEST(Decoder, SentencePieceChain) {
  EXPECT_EQ(decode(kSentencePieceDecoder, {"▁Hello", "▁world", "<0xE2>", "<0x82>", "<0xAC>", "!"}), "Hello world€!");
  // An invalid byte run becomes one U+FFFD per byte, as Hugging Face's ByteFallback does.
  EXPECT_EQ(decode(kSentencePieceDecoder, {"▁a", "<0xE2>", "<0x82>", "b"}), "a\uFFFD\uFFFDb");
  // Per token, the space stays: the first-token strip is a property of the sequence.
  EXPECT_EQ(make_decoder(kSentencePieceDecoder)->token_bytes("▁Hello"), " Hello");
  EXPECT_EQ(make_decoder(kSentencePieceDecoder)->token_bytes("<0x0A>"), "\n");
}

TEST(Decoder, ByteLevelAndMetaspace) {
  EXPECT_EQ(decode({{"type", "ByteLevel"}}, {"Hello", "Ġworld", "Ċ"}), "Hello world\n");
  EXPECT_EQ(decode({{"type", "ByteLevel"}}, {"Ã"}), "\uFFFD");  // a lone lead byte
  const json metaspace = {{"type", "Metaspace"}, {"replacement", "▁"}, {"prepend_scheme", "always"}};
  EXPECT_EQ(decode(metaspace, {"▁Hey", "▁friend"}), "Hey friend");
}

TEST(Utf8, InvalidSequencesBecomeOneReplacementEach) {
  EXPECT_EQ(valid_utf8("a\xE2\x82"
                       "b"),
            "a\uFFFD"
            "b");                                               // truncated 3-byte sequence: one
  EXPECT_EQ(valid_utf8("\x80\x80"), "\uFFFD\uFFFD");            // lone continuations: one each
  EXPECT_EQ(valid_utf8("\xED\xA0\x80"), "\uFFFD\uFFFD\uFFFD");  // a surrogate is not UTF-8
  EXPECT_EQ(valid_utf8("ok \xF0\x9F\x98\x80"), "ok 😀");
}

std::vector<std::pair<std::string, int32_t>> matches(const AddedTokenMatcher& m, const std::string& text,
                                                     bool special = true) {
  std::vector<std::pair<std::string, int32_t>> out;
  for (const auto& s : m.split(text, special)) out.emplace_back(std::string(s.text), s.token);
  return out;
}

TEST(AddedTokens, LongestLeftmostStripAndSingleWord) {
  AddedTokenMatcher m;
  m.add({.id = 1, .content = "<mask>", .special = true, .lstrip = true});
  m.add({.id = 2, .content = "<mask>x", .special = true});
  m.add({.id = 3, .content = "cat", .single_word = true});
  m.add({.id = 4, .content = "[R]", .rstrip = true});
  using M = std::vector<std::pair<std::string, int32_t>>;
  EXPECT_EQ(matches(m, "a  <mask> b"), (M{{"a", -1}, {"  <mask>", 1}, {" b", -1}}));
  EXPECT_EQ(matches(m, "a<mask>xy"), (M{{"a", -1}, {"<mask>x", 2}, {"y", -1}}));
  EXPECT_EQ(matches(m, "cat concat cats"), (M{{"cat", 3}, {" concat cats", -1}}));
  EXPECT_EQ(matches(m, "[R]   z"), (M{{"[R]   ", 4}, {"z", -1}}));
  EXPECT_EQ(matches(m, "a <mask>", /*special=*/false), (M{{"a <mask>", -1}}));
}

}  // namespace
}  // namespace nanoserve
