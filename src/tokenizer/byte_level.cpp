#include "tokenizer/byte_level.h"

#include <array>
#include <unordered_map>

#include "util/utf8.h"

namespace nanoserve {

namespace {

struct ByteLevelTables {
  std::array<std::string, 256> encoded;  // byte -> UTF-8 of its code point
  std::unordered_map<char32_t, unsigned char> decoded;

  ByteLevelTables() {
    char32_t next_unprintable = 256;
    for (int b = 0; b < 256; ++b) {
      const bool printable = (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF);
      const char32_t cp = printable ? static_cast<char32_t>(b) : next_unprintable++;
      append_utf8(encoded[static_cast<size_t>(b)], cp);
      decoded[cp] = static_cast<unsigned char>(b);
    }
  }
};

const ByteLevelTables& tables() {
  static const ByteLevelTables t;
  return t;
}

}  // namespace

std::string bytes_to_byte_level(std::string_view bytes) {
  std::string out;
  out.reserve(bytes.size() * 2);
  for (unsigned char b : bytes) out += tables().encoded[b];
  return out;
}

std::string byte_level_to_bytes(std::string_view text) {
  std::string out;
  out.reserve(text.size());
  for (size_t pos = 0; pos < text.size();) {
    const size_t start = pos;
    const char32_t cp = next_code_point(text, pos);
    auto it = tables().decoded.find(cp);
    if (it != tables().decoded.end()) {
      out += static_cast<char>(it->second);
    } else {
      out.append(text.substr(start, pos - start));
    }
  }
  return out;
}

}  // namespace nanoserve
