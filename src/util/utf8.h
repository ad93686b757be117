// Minimal UTF-8 and text helpers for the tokenizer, the grammars and streaming output.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>

namespace nanoserve {

// U+FFFD, the replacement character: what invalid or incomplete bytes decode to.
inline constexpr std::string_view kReplacementCharacter = "\xEF\xBF\xBD";

void append_utf8(std::string& out, char32_t code_point);

// Decodes the code point starting at text[pos] and advances pos; returns U+FFFD for invalid bytes.
char32_t next_code_point(std::string_view text, size_t& pos);

// text with each maximal invalid subsequence replaced by U+FFFD, as Rust's String::from_utf8_lossy
// (and so Hugging Face's decoders) does.
std::string valid_utf8(std::string_view text);

// Where the character that ends at byte `end` (> 0) begins, and its code point.
size_t previous_code_point_start(std::string_view text, size_t end);
char32_t code_point_before(std::string_view text, size_t end);

// The value of a hexadecimal digit, or -1 (escapes in GBNF, regexes and URLs).
int hex_digit(char c);

}  // namespace nanoserve
