// Minimal UTF-8 helpers for the tokenizer and streaming output.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>

namespace nanoserve {

void append_utf8(std::string& out, char32_t code_point);

// Decodes the code point starting at text[pos] and advances pos; returns U+FFFD for invalid bytes.
char32_t next_code_point(std::string_view text, size_t& pos);

// text with each maximal invalid subsequence replaced by U+FFFD, as Rust's String::from_utf8_lossy
// (and so Hugging Face's decoders) does.
std::string valid_utf8(std::string_view text);

// Length of the longest prefix of text that does not end inside a multi-byte character: the part
// that can be printed now while the rest may still be completed by the next token.
size_t complete_utf8_prefix(std::string_view text);

}  // namespace nanoserve
