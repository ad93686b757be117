// Normalizers of tokenizer.json: rewrite the text of each segment between added tokens before it is
// pre-tokenized (Unicode normalization, SentencePiece's ▁ for spaces, lowercasing).
#pragma once

#include <memory>
#include <nlohmann/json.hpp>
#include <string>

namespace nanoserve {

class Normalizer {
 public:
  // A tokenizer.json may chain Replace steps that each multiply the text (a -> aaaa, twelve times):
  // the normalized text may be at most this many times the input (plus a little), and no step
  // builds more than that. Real normalizers grow text at most 3x (a space becomes "▁").
  static constexpr size_t kMaxGrowth = 32;
  static constexpr size_t kGrowthSlack = 4096;

  virtual ~Normalizer() = default;
  // Throws Error when the text would grow past the bound above.
  std::string normalize(std::string text) const;
  // One step; its result (and anything it builds) stays within max_bytes or it throws Error.
  virtual std::string normalize_within(std::string text, size_t max_bytes) const = 0;
};

// From tokenizer.json's "normalizer"; nullptr for null. Throws Error for unsupported types.
std::unique_ptr<Normalizer> make_normalizer(const nlohmann::json& j);

}  // namespace nanoserve
