// GPT-2's byte-level alphabet: every byte maps to a printable code point, so BPE runs on text
// that can hold any bytes. Printable Latin-1 bytes map to themselves; the others to U+0100 upwards.
#pragma once

#include <string>
#include <string_view>

namespace nanoserve {

std::string bytes_to_byte_level(std::string_view bytes);  // each byte -> its code point, UTF-8 encoded
std::string byte_level_to_bytes(std::string_view text);   // the inverse; other code points pass through

}  // namespace nanoserve
