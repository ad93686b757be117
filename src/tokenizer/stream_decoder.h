// Turns generated tokens into printable text as they arrive: bytes of a character split across
// tokens are held back until the character is complete, so the stream never prints half of one.
#pragma once

#include <string>

#include "tokenizer/tokenizer.h"

namespace nanoserve {

class StreamDecoder {
 public:
  explicit StreamDecoder(const Tokenizer& tokenizer) : tokenizer_(tokenizer) {}

  std::string push(int32_t id);  // the text that became complete with this token
  std::string finish();          // whatever is still held back (an incomplete character at the end)

 private:
  const Tokenizer& tokenizer_;
  std::string pending_;
};

}  // namespace nanoserve
