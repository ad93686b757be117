#include "tokenizer/stream_decoder.h"

#include "util/utf8.h"

namespace nanoserve {

std::string StreamDecoder::push(int32_t id) {
  pending_ += tokenizer_.token_bytes(id);
  const size_t ready = complete_utf8_prefix(pending_);
  std::string out = pending_.substr(0, ready);
  pending_.erase(0, ready);
  return out;
}

std::string StreamDecoder::finish() { return std::exchange(pending_, {}); }

}  // namespace nanoserve
