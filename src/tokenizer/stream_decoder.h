// Turns generated tokens into printable text as they arrive. Each step decodes a short window of
// recent tokens twice, with and without the new one, and prints the difference once it no longer
// ends in an incomplete character: so the stream equals the full decode, never prints half a
// character, and keeps the space SentencePiece decoders strip only from a sequence's first token.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "tokenizer/tokenizer.h"

namespace nanoserve {

class StreamDecoder {
 public:
  // context: the tokens the output continues (the end of the prompt); their text is not printed,
  // but the first generated token is decoded as their continuation rather than as a text's start.
  explicit StreamDecoder(const Tokenizer& tokenizer, std::span<const int32_t> context = {});

  std::string push(int32_t id);  // the text that became complete with this token
  std::string finish();          // whatever is still held back (an incomplete character at the end)

 private:
  std::string decode_from(size_t begin, size_t end) const;

  const Tokenizer& tokenizer_;
  std::vector<int32_t> ids_;
  size_t prefix_ = 0;  // decoding starts here, so that text at read_ is decoded in context
  size_t read_ = 0;    // text of tokens before this has been printed
};

}  // namespace nanoserve
