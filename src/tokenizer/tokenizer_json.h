// Reading tokenizer.json. The BPE vocabulary and merges are most of the file (a 128k vocabulary is
// ~9 MB), so they are read with simdjson straight into the model; the small component objects
// (normalizer, pre-tokenizer, decoder, ...) become nlohmann::json for their factories.
#pragma once

#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>

#include "tokenizer/bpe.h"

namespace nanoserve {

struct TokenizerJson {
  std::unique_ptr<BpeModel> model;
  nlohmann::json normalizer, pre_tokenizer, post_processor, decoder;  // null when absent
  nlohmann::json added_tokens = nlohmann::json::array();
};

// Throws Error (without the source's name; the caller adds it) for malformed or unsupported files.
TokenizerJson parse_tokenizer_json(std::string_view text);

}  // namespace nanoserve
