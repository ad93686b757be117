// A tokenizer.json pipeline: added tokens are matched first, the text between them is
// pre-tokenized and BPE-encoded, and the post-processor adds special tokens (e.g. BOS).
#pragma once

#include <cstdint>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>
#include <vector>

#include "tokenizer/bpe.h"
#include "tokenizer/pre_tokenizer.h"

namespace nanoserve {

struct AddedToken {
  int32_t id;
  std::string content;
  bool special;  // special tokens are dropped by decode(skip_special=true)
};

class Tokenizer {
 public:
  // path: a tokenizer.json file, or a directory holding one. Throws Error naming the file.
  static Tokenizer from_file(const std::string& path);
  // From tokenizer.json's parsed contents; source names it in errors.
  static Tokenizer from_json(const nlohmann::json& j, const std::string& source);

  // add_special: apply the post-processor (e.g. prepend BOS). Added tokens in the text are always
  // matched, as Hugging Face does by default.
  std::vector<int32_t> encode(std::string_view text, bool add_special = true) const;
  std::string decode(const std::vector<int32_t>& ids, bool skip_special = true) const;

  // The bytes one token contributes to decoded text ("" for a skipped special token).
  std::string token_bytes(int32_t id, bool skip_special = true) const;

  int32_t vocab_size() const { return static_cast<int32_t>(id_to_token_.size()); }
  bool is_special(int32_t id) const;

 private:
  Tokenizer() = default;
  void encode_ordinary(std::string_view text, std::vector<int32_t>& out) const;

  std::unique_ptr<BpeModel> model_;
  std::unique_ptr<PreTokenizer> pre_tokenizer_;
  std::vector<AddedToken> added_;
  std::vector<std::string> id_to_token_;
  std::vector<bool> special_;
  std::vector<int32_t> prefix_, suffix_;  // ids the post-processor puts around the text
  bool byte_level_decoder_ = false;
};

}  // namespace nanoserve
