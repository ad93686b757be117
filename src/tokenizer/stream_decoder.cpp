#include "tokenizer/stream_decoder.h"

#include <algorithm>

#include "util/utf8.h"

namespace nanoserve {

namespace {
constexpr size_t kContextTokens = 4;  // enough for a leading space or a byte-fallback character
}  // namespace

StreamDecoder::StreamDecoder(const Tokenizer& tokenizer, std::span<const int32_t> context)
    : tokenizer_(tokenizer),
      ids_(context.end() - static_cast<ptrdiff_t>(std::min(context.size(), kContextTokens)), context.end()) {
  read_ = ids_.size();
}

std::string StreamDecoder::decode_from(size_t begin, size_t end) const {
  return tokenizer_.decode(
      std::vector<int32_t>(ids_.begin() + static_cast<ptrdiff_t>(begin), ids_.begin() + static_cast<ptrdiff_t>(end)));
}

std::string StreamDecoder::push(int32_t id) {
  ids_.push_back(id);
  const std::string printed = decode_from(prefix_, read_);
  const std::string text = decode_from(prefix_, ids_.size());
  const bool incomplete = text.ends_with(kReplacementCharacter);  // what an incomplete character decodes to
  // The new text is what lies past the printed text's length (when a byte-fallback run turns out
  // invalid, earlier characters can change; they stay printed as they were).
  if (text.size() <= printed.size() || incomplete) return {};
  prefix_ = read_;
  read_ = ids_.size();
  // Keep the window short: decoding cost stays constant however long the output grows.
  if (prefix_ > kContextTokens) {
    ids_.erase(ids_.begin(), ids_.begin() + static_cast<ptrdiff_t>(prefix_));
    read_ -= prefix_;
    prefix_ = 0;
  }
  return text.substr(printed.size());
}

std::string StreamDecoder::finish() {
  const std::string printed = decode_from(prefix_, read_);
  const std::string text = decode_from(prefix_, ids_.size());
  prefix_ = read_ = ids_.size();
  return text.size() > printed.size() ? text.substr(printed.size()) : std::string();
}

}  // namespace nanoserve
