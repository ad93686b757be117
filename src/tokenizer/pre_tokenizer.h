// Pre-tokenizers of tokenizer.json: split the text into pieces that BPE encodes independently.
#pragma once

#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

namespace nanoserve {

class PreTokenizer {
 public:
  virtual ~PreTokenizer() = default;
  // Replaces each piece by the pieces it splits into, in order.
  virtual void split(std::vector<std::string>& pieces) const = 0;
};

// From tokenizer.json's "pre_tokenizer"; nullptr for null. Throws Error for unsupported types.
std::unique_ptr<PreTokenizer> make_pre_tokenizer(const nlohmann::json& j);

}  // namespace nanoserve
