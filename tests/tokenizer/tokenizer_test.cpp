#include "tokenizer/tokenizer.h"

#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "test_support.h"
#include "tokenizer/stream_decoder.h"
#include "util/utf8.h"
#include "util/error.h"

namespace nanoserve {
namespace {

class DemoTokenizer : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    tokenizer_ = new Tokenizer(Tokenizer::from_file(test::demo_model_dir()));
    cases_ = nlohmann::json::parse(test::read_file(test::fixture("demo/tokenizer_ids.json")))["cases"];
  }
  static void TearDownTestSuite() { delete tokenizer_; }
  static Tokenizer* tokenizer_;
  static nlohmann::json cases_;
};
Tokenizer* DemoTokenizer::tokenizer_ = nullptr;
nlohmann::json DemoTokenizer::cases_;

// Ids identical to Hugging Face tokenizers for every held-out document and edge case.
TEST_F(DemoTokenizer, IdsMatchHuggingFace) {
  ASSERT_GE(cases_.size(), 200u);
  size_t mismatches = 0, tokens = 0;
  for (const auto& c : cases_) {
    const auto text = c["text"].get<std::string>();
    const auto expected = c["ids"].get<std::vector<int32_t>>();
    const auto expected_plain = c["ids_no_special"].get<std::vector<int32_t>>();
    const auto got = tokenizer_->encode(text);
    mismatches += got != expected;
    mismatches += tokenizer_->encode(text, false) != expected_plain;
    EXPECT_EQ(got, expected) << text;
    tokens += got.size();
  }
  EXPECT_EQ(mismatches, 0u);
  std::printf("  %zu texts, %zu tokens, %zu mismatches\n", cases_.size(), tokens, mismatches);
}

TEST_F(DemoTokenizer, DecodeRoundTrips) {
  for (const auto& c : cases_) {
    const auto text = c["text"].get<std::string>();
    EXPECT_EQ(tokenizer_->decode(c["ids_no_special"].get<std::vector<int32_t>>(), false), text);
  }
}

TEST_F(DemoTokenizer, BosFromPostProcessorAndSpecialTokensSkipped) {
  const auto ids = tokenizer_->encode("Hello");
  ASSERT_FALSE(ids.empty());
  EXPECT_EQ(ids[0], 0);  // <|begin_of_text|>
  EXPECT_EQ(tokenizer_->decode(ids), "Hello");
  EXPECT_EQ(tokenizer_->decode(ids, false), "<|begin_of_text|>Hello");
  EXPECT_TRUE(tokenizer_->is_special(1));
  EXPECT_FALSE(tokenizer_->is_special(100));
}

// Streaming prints exactly the full decode, and never part of a multi-byte character.
TEST_F(DemoTokenizer, StreamDecoderNeverSplitsCharacters) {
  for (const char* text : {"Emoji: 👍🏽 👨‍👩‍👧 🇩🇪", "北京 東京 한국어", "café naïve", "plain"}) {
    const auto ids = tokenizer_->encode(text, false);
    StreamDecoder stream(*tokenizer_);
    std::string out;
    for (int32_t id : ids) {
      std::string piece = stream.push(id);
      EXPECT_EQ(valid_utf8(piece), piece) << "split character in " << text;
      out += piece;
    }
    out += stream.finish();
    EXPECT_EQ(out, text);
  }
}

TEST_F(DemoTokenizer, InvalidUtf8IsAnError) { EXPECT_THROW(tokenizer_->encode("bad \xff\xfe bytes"), Error); }

TEST_F(DemoTokenizer, IdOutsideVocabularyIsAnError) { EXPECT_THROW(tokenizer_->decode({5000}), Error); }

TEST(Tokenizer, UnsupportedComponentsAreNamed) {
  test::ScratchDir dir;
  auto j = nlohmann::json::parse(test::read_file(test::demo_model_dir() + "/tokenizer.json"));
  j["pre_tokenizer"] = {{"type", "BertPreTokenizer"}};
  test::write_file(dir.file("tokenizer.json"), j.dump());
  try {
    Tokenizer::from_file(dir.path().string());
    FAIL();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("pre-tokenizer type 'BertPreTokenizer' is not supported"), std::string::npos)
        << e.what();
  }
}

TEST(Tokenizer, MalformedFileIsAnError) {
  test::ScratchDir dir;
  test::write_file(dir.file("tokenizer.json"),
                   R"({"model": {"type": "BPE", "vocab": {"a": 0}, "merges": [["a", "zz"]]}})");
  EXPECT_THROW(Tokenizer::from_file(dir.file("tokenizer.json")), Error);
  test::write_file(dir.file("tokenizer.json"), R"({"model": 5})");
  EXPECT_THROW(Tokenizer::from_file(dir.file("tokenizer.json")), Error);
}

// Found by fuzz_tokenizer after 965k inputs: an id written as a float (51e9) was converted to int,
// which is undefined past its range. Ids are integers in range, or the file is refused by name.
TEST(Tokenizer, TokenIdsMustBeIntegersInRange) {
  const std::string model = R"("model": {"type": "BPE", "vocab": {"a": 0, "b": 1}, "merges": []})";
  auto error_of = [&](const std::string& rest) {
    try {
      Tokenizer::from_text("{" + model + ", " + rest + "}", "tokenizer.json");
    } catch (const Error& e) {
      return std::string(e.what());
    }
    return std::string("(no error)");
  };
  EXPECT_NE(error_of(R"("added_tokens": [{"id": 51e9, "content": "<x>"}])")
                .find("added token id: expected an integer in [0, 2147483647], got 51000000000.0"),
            std::string::npos);
  EXPECT_NE(error_of(R"("added_tokens": [{"id": 4294967297, "content": "<x>"}])").find("got 4294967297"),
            std::string::npos);
  EXPECT_NE(error_of(R"("post_processor": {"type": "BertProcessing", "cls": ["a", 1.5], "sep": ["b", 1]})")
                .find("post_processor token id: expected an integer in [0, 2147483647], got 1.5"),
            std::string::npos);
}

}  // namespace
}  // namespace nanoserve
