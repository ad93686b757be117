// A tokenizer.json pipeline, as Hugging Face tokenizers runs it: added tokens are found first; the
// text between them is normalized, pre-tokenized into pieces and BPE-encoded; the post-processor
// adds special tokens (e.g. BOS). Decoding runs the decoder chain over the tokens' strings.
#pragma once

#include <cstdint>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "tokenizer/added_tokens.h"
#include "tokenizer/bpe.h"
#include "tokenizer/decoder.h"
#include "tokenizer/normalizer.h"
#include "tokenizer/pre_tokenizer.h"

namespace nanoserve {

class Tokenizer {
 public:
  // path: a tokenizer.json file, a directory holding one, or a GGUF file (its tokenizer.ggml.*
  // vocabulary). Throws Error naming the file.
  static Tokenizer from_file(const std::string& path);
  // From tokenizer.json's text; source names it in errors.
  static Tokenizer from_text(std::string_view text, const std::string& source);

  // add_special: apply the post-processor (e.g. prepend BOS). parse_special: special tokens written
  // in the text become their ids (Hugging Face's default); false encodes them as ordinary text.
  std::vector<int32_t> encode(std::string_view text, bool add_special = true, bool parse_special = true) const;
  std::string decode(const std::vector<int32_t>& ids, bool skip_special = true) const;

  // The bytes one token contributes to decoded text ("" for a skipped special token), before the
  // sequence-level steps of the decoder (e.g. SentencePiece's first leading space).
  std::string token_bytes(int32_t id, bool skip_special = true) const;

  int32_t vocab_size() const { return static_cast<int32_t>(id_to_token_.size()); }
  bool is_special(int32_t id) const;
  std::optional<int32_t> token_id(std::string_view token) const;  // a token string's id

  // U+FDD0, a noncharacter: encode() drops it from ordinary text, and text it interrupts is no
  // added token. protect_special_text puts it between the characters of special-token text in a
  // string, so that user-supplied text placed into a prompt by a template can never spell a control
  // token while the template's own special tokens still do.
  static constexpr std::string_view kLiteralMark = "\xEF\xB7\x90";
  std::string protect_special_text(std::string_view text) const;
  static std::string strip_literal_marks(std::string text);

 private:
  Tokenizer() = default;
  void encode_segment(std::string_view text, bool at_text_start, bool parse_special, std::vector<int32_t>& out) const;
  void encode_ordinary(std::string_view text, bool at_text_start, std::vector<int32_t>& out) const;
  void add_token(const AddedToken& token);
  void build_id_table(const std::string& source);

  std::unique_ptr<BpeModel> model_;
  std::unique_ptr<Normalizer> normalizer_;
  std::unique_ptr<PreTokenizer> pre_tokenizer_;
  std::unique_ptr<Decoder> decoder_;
  std::vector<AddedToken> added_;
  AddedTokenMatcher raw_added_, normalized_added_;
  AddedTokenMatcher special_text_;  // the special tokens' raw text, for protect_special_text
  std::vector<std::string> id_to_token_;
  std::vector<bool> special_;
  std::vector<int32_t> prefix_, suffix_;  // ids the post-processor puts around the text
};

}  // namespace nanoserve
