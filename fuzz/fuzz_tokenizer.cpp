// tokenizer.json loading, and encoding arbitrary text (valid or not as UTF-8) with it and with the
// demo model's tokenizer. The first byte picks the mode.
#include <cstdint>

#include "tokenizer/stream_decoder.h"
#include "tokenizer/tokenizer.h"
#include "util/error.h"

using nanoserve::Tokenizer;

namespace {
const Tokenizer& demo() {
  static const Tokenizer tokenizer = Tokenizer::from_file(NANOSERVE_DEMO_DIR);
  return tokenizer;
}

void round_trip(const Tokenizer& tok, std::string_view text) {
  const auto ids = tok.encode(text);
  nanoserve::StreamDecoder stream(tok);
  std::string streamed;
  for (int32_t id : ids) streamed += stream.push(id);
  streamed += stream.finish();
  if (streamed != tok.decode(ids)) __builtin_trap();  // streaming must equal the full decode
}
}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  const std::string_view rest(reinterpret_cast<const char*>(data + 1), size - 1);
  try {
    if (data[0] % 2 == 0) {
      round_trip(demo(), rest);
    } else {
      Tokenizer tok = Tokenizer::from_text(rest, "tokenizer.json");
      round_trip(tok, "Hello, world! 123 <|end|> ünïcødé");
    }
  } catch (const nanoserve::Error&) {}
  return 0;
}
