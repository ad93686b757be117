// Pre-tokenizers of tokenizer.json: split the text into pieces that the model encodes independently.
#pragma once

#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

namespace nanoserve {

class PreTokenizer {
 public:
  virtual ~PreTokenizer() = default;
  // Replaces each piece by the pieces it splits into, in order. at_text_start: pieces[0] begins
  // the input text (not a segment after an added token), which Metaspace's "first" scheme needs.
  virtual void split(std::vector<std::string>& pieces, bool at_text_start) const = 0;
};

// From tokenizer.json's "pre_tokenizer"; nullptr for null. Throws Error for unsupported types.
std::unique_ptr<PreTokenizer> make_pre_tokenizer(const nlohmann::json& j);

}  // namespace nanoserve
