// Normalizers of tokenizer.json: rewrite the text of each segment between added tokens before it is
// pre-tokenized (Unicode normalization, SentencePiece's ▁ for spaces, lowercasing).
#pragma once

#include <memory>
#include <nlohmann/json.hpp>
#include <string>

namespace nanoserve {

class Normalizer {
 public:
  virtual ~Normalizer() = default;
  virtual std::string normalize(std::string text) const = 0;
};

// From tokenizer.json's "normalizer"; nullptr for null. Throws Error for unsupported types.
std::unique_ptr<Normalizer> make_normalizer(const nlohmann::json& j);

}  // namespace nanoserve
