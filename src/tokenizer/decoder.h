// Decoders of tokenizer.json: turn token strings back into text (byte-level bytes, ▁ to space,
// <0xNN> byte tokens, the leading space SentencePiece adds), with Hugging Face's semantics.
#pragma once

#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

namespace nanoserve {

class Decoder {
 public:
  virtual ~Decoder() = default;
  // One step of the chain over the whole sequence's token strings.
  virtual void decode_chain(std::vector<std::string>& tokens) const = 0;
  // The bytes one token stands for wherever it occurs, without the sequence-level steps (joining,
  // stripping the first token's space): what a logprobs entry or a byte count wants.
  virtual std::string token_bytes(std::string token) const = 0;
};

// From tokenizer.json's "decoder"; nullptr for null. Throws Error for unsupported types.
std::unique_ptr<Decoder> make_decoder(const nlohmann::json& j);

}  // namespace nanoserve
