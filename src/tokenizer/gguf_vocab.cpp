#include "tokenizer/gguf_vocab.h"

#include <fmt/format.h>
#include <fmt/ranges.h>

#include <algorithm>
#include <numeric>
#include <unordered_map>

#include "formats/gguf_metadata.h"
#include "util/error.h"
#include "util/utf8.h"

namespace nanoserve {

namespace {

using json = nlohmann::json;

// GGUF token types (llama.cpp's): what a vocabulary entry is.
enum TokenType : int64_t { kNormal = 1, kUnknown = 2, kControl = 3, kUserDefined = 4, kUnused = 5, kByte = 6 };

constexpr const char* kMetaspace = "\xE2\x96\x81";  // U+2581, SentencePiece's space

// Split regexes of the pre-tokenizers llama.cpp names in tokenizer.ggml.pre (the regexes of the
// tokenizer.json files those names stand for).
struct PreTokenizer {
  std::vector<std::string_view> names;
  const char* regex;
  bool ignore_merges;  // llama.cpp looks a whole piece up in the vocabulary before merging
  bool add_bos;        // llama.cpp's default for tokenizer.ggml.add_bos_token
};

const PreTokenizer kPreTokenizers[] = {
    {{"llama3", "llama-v3", "llama-bpe", "falcon3"},
     R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)",
     true,
     true},
    {{"dbrx", "smaug-bpe"},
     R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)",
     false,
     false},
    {{"qwen2", "deepseek-r1-qwen", "stablelm2"},
     R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)",
     false,
     false},
    {{"gpt-2", "phi-2", "roberta-bpe", "olmo", "mpt", "jais"},
     R"('s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+)",
     false,
     false},
};

const PreTokenizer& find_pre_tokenizer(std::string_view name, const std::string& source) {
  std::vector<std::string_view> known;
  for (const auto& p : kPreTokenizers) {
    if (std::find(p.names.begin(), p.names.end(), name) != p.names.end()) return p;
    known.insert(known.end(), p.names.begin(), p.names.end());
  }
  fail("{}: tokenizer.ggml.pre '{}' is not supported (supported: {})", source, name, fmt::join(known, ", "));
}

struct Vocabulary {
  std::vector<std::string_view> tokens;
  std::vector<int64_t> types;
};

// JSON holds text: a token or merge that is not UTF-8 cannot be described (nor typed by a user).
std::vector<std::string_view> utf8_strings(const GgufMetadata& m, const char* key) {
  auto strings = m.strings(key);
  for (size_t i = 0; i < strings.size(); ++i) {
    if (valid_utf8(strings[i]) != strings[i]) fail("{}: {}[{}] is not valid UTF-8", m.source(), key, i);
  }
  return strings;
}

Vocabulary read_vocabulary(const GgufMetadata& m) {
  Vocabulary v{utf8_strings(m, "tokenizer.ggml.tokens"), m.integers("tokenizer.ggml.token_type")};
  if (v.tokens.empty()) fail("{}: metadata tokenizer.ggml.tokens is missing or empty", m.source());
  if (v.types.empty()) v.types.assign(v.tokens.size(), kNormal);
  if (v.types.size() != v.tokens.size()) {
    fail("{}: tokenizer.ggml.token_type has {} entries for {} tokens", m.source(), v.types.size(), v.tokens.size());
  }
  return v;
}

json vocab_object(const Vocabulary& v) {
  json vocab = json::object();
  for (size_t id = 0; id < v.tokens.size(); ++id) vocab[std::string(v.tokens[id])] = id;
  return vocab;
}

// Control, unknown and user-defined tokens are matched in the text before the model runs.
json added_tokens(const Vocabulary& v) {
  json added = json::array();
  for (size_t id = 0; id < v.tokens.size(); ++id) {
    const int64_t type = v.types[id];
    if (type != kControl && type != kUnknown && type != kUserDefined) continue;
    added.push_back({{"id", id},
                     {"content", std::string(v.tokens[id])},
                     {"single_word", false},
                     {"lstrip", false},
                     {"rstrip", false},
                     {"normalized", false},
                     {"special", type != kUserDefined}});
  }
  return added;
}

// BOS / EOS around the text, as tokenizer.ggml.add_bos_token / add_eos_token (or the defaults) say.
json post_processor(const GgufMetadata& m, const Vocabulary& v, bool add_bos_default) {
  json single = json::array(), special_tokens = json::object();
  auto add_special = [&](const char* id_key) {
    const auto id = m.integer(id_key);
    if (!id || *id < 0 || *id >= static_cast<int64_t>(v.tokens.size())) {
      fail("{}: {} names no token of the vocabulary", m.source(), id_key);
    }
    const std::string token(v.tokens[static_cast<size_t>(*id)]);
    single.push_back({{"SpecialToken", {{"id", token}, {"type_id", 0}}}});
    special_tokens[token] = {{"id", token}, {"ids", {*id}}, {"tokens", {token}}};
  };
  const bool add_bos =
      m.boolean("tokenizer.ggml.add_bos_token").value_or(add_bos_default && m.has("tokenizer.ggml.bos_token_id"));
  if (add_bos) add_special("tokenizer.ggml.bos_token_id");
  single.push_back({{"Sequence", {{"id", "A"}, {"type_id", 0}}}});
  if (m.boolean("tokenizer.ggml.add_eos_token").value_or(false)) add_special("tokenizer.ggml.eos_token_id");
  return {{"type", "TemplateProcessing"}, {"single", single}, {"pair", single}, {"special_tokens", special_tokens}};
}

json byte_level_tokenizer(const GgufMetadata& m, const Vocabulary& v) {
  const PreTokenizer& pre = find_pre_tokenizer(m.string("tokenizer.ggml.pre").value_or("default"), m.source());
  json merges = json::array();
  for (std::string_view merge : utf8_strings(m, "tokenizer.ggml.merges")) merges.push_back(std::string(merge));
  return {
      {"normalizer", nullptr},
      {"pre_tokenizer",
       {{"type", "Sequence"},
        {"pretokenizers",
         {{{"type", "Split"}, {"pattern", {{"Regex", pre.regex}}}, {"behavior", "Isolated"}, {"invert", false}},
          {{"type", "ByteLevel"}, {"add_prefix_space", false}, {"trim_offsets", true}, {"use_regex", false}}}}}},
      {"model",
       {{"type", "BPE"}, {"vocab", vocab_object(v)}, {"merges", merges}, {"ignore_merges", pre.ignore_merges}}},
      {"decoder", {{"type", "ByteLevel"}, {"add_prefix_space", true}, {"trim_offsets", true}, {"use_regex", true}}},
      {"post_processor", post_processor(m, v, pre.add_bos)},
      {"added_tokens", added_tokens(v)},
  };
}

// SentencePiece merges: every split of a piece into two pieces of the vocabulary, ranked by the
// merged piece's score (higher first), then by id, as SentencePiece's BPE picks the best-scored pair.
json sentencepiece_merges(const Vocabulary& v, const std::vector<double>& scores) {
  std::unordered_map<std::string_view, size_t> ids;
  for (size_t id = 0; id < v.tokens.size(); ++id) {
    if (v.types[id] == kNormal || v.types[id] == kUserDefined) ids.emplace(v.tokens[id], id);
  }
  struct Merge {
    size_t merged, left, right;
  };
  std::vector<Merge> merges;
  for (const auto& [piece, id] : ids) {
    for (size_t cut = 1; cut < piece.size(); ++cut) {
      auto left = ids.find(piece.substr(0, cut)), right = ids.find(piece.substr(cut));
      if (left != ids.end() && right != ids.end()) merges.push_back({id, left->second, right->second});
    }
  }
  std::sort(merges.begin(), merges.end(), [&](const Merge& a, const Merge& b) {
    if (scores[a.merged] != scores[b.merged]) return scores[a.merged] > scores[b.merged];
    return std::tie(a.merged, a.left, a.right) < std::tie(b.merged, b.left, b.right);
  });
  json out = json::array();
  for (const auto& merge : merges)
    out.push_back({std::string(v.tokens[merge.left]), std::string(v.tokens[merge.right])});
  return out;
}

json sentencepiece_tokenizer(const GgufMetadata& m, const Vocabulary& v) {
  const auto scores = m.numbers("tokenizer.ggml.scores");
  if (scores.size() != v.tokens.size()) {
    fail("{}: tokenizer.ggml.scores has {} entries for {} tokens", m.source(), scores.size(), v.tokens.size());
  }
  const bool space_prefix = m.boolean("tokenizer.ggml.add_space_prefix").value_or(true);
  json normalizers = json::array();
  if (space_prefix) normalizers.push_back({{"type", "Prepend"}, {"prepend", kMetaspace}});
  normalizers.push_back({{"type", "Replace"}, {"pattern", {{"String", " "}}}, {"content", kMetaspace}});
  json decoders = {{{"type", "Replace"}, {"pattern", {{"String", kMetaspace}}}, {"content", " "}},
                   {{"type", "ByteFallback"}},
                   {{"type", "Fuse"}}};
  if (space_prefix) decoders.push_back({{"type", "Strip"}, {"content", " "}, {"start", 1}, {"stop", 0}});
  json model = {{"type", "BPE"},
                {"vocab", vocab_object(v)},
                {"merges", sentencepiece_merges(v, scores)},
                {"byte_fallback", true},
                {"fuse_unk", true}};
  for (size_t id = 0; id < v.tokens.size(); ++id) {
    if (v.types[id] == kUnknown) model["unk_token"] = std::string(v.tokens[id]);
  }
  return {{"normalizer", {{"type", "Sequence"}, {"normalizers", normalizers}}},
          {"pre_tokenizer", nullptr},
          {"model", model},
          {"decoder", {{"type", "Sequence"}, {"decoders", decoders}}},
          {"post_processor", post_processor(m, v, true)},
          {"added_tokens", added_tokens(v)}};
}

}  // namespace

json gguf_tokenizer_json(const GgufContents& contents, const std::string& source) {
  const GgufMetadata m(contents, source);
  const std::string_view model = m.required_string("tokenizer.ggml.model");
  const Vocabulary v = read_vocabulary(m);
  if (model == "gpt2") return byte_level_tokenizer(m, v);
  if (model == "llama") return sentencepiece_tokenizer(m, v);
  fail("{}: tokenizer.ggml.model '{}' is not supported (supported: gpt2, llama)", source, model);
}

std::string gguf_token_text(const GgufMetadata& metadata, std::span<const std::string_view> tokens,
                            const char* id_key) {
  const auto id = metadata.integer(id_key);
  if (!id || *id < 0 || *id >= static_cast<int64_t>(tokens.size())) return "";
  return std::string(tokens[static_cast<size_t>(*id)]);
}

}  // namespace nanoserve
