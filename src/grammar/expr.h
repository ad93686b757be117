// The language every grammar input is translated into before compilation: a tree of characters,
// sequences, alternatives, repetitions and references to named rules. GBNF, regular expressions
// and JSON Schema each build one of these per rule; grammar.h lowers them to the matcher's form.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "util/utf8.h"  // hex_digit, for the escapes of GBNF and regex

namespace nanoserve::grammar {

// Inclusive range of Unicode code points.
struct CodeRange {
  char32_t first, last;
};
inline constexpr char32_t kMaxCodePoint = 0x10FFFF;

struct Expr {
  enum class Kind {
    Chars,   // one character from `ranges` (empty: matches nothing)
    Bytes,   // one byte in [ranges[0].first, ranges[0].last] (raw bytes, for token text)
    Seq,     // items one after another (empty: matches the empty string)
    Alt,     // one of items (empty: matches nothing)
    Ref,     // the rule numbered `rule`
    Repeat,  // items[0], at least `min` and at most `max` times (max < 0: unbounded)
  };
  Kind kind = Kind::Seq;
  std::vector<CodeRange> ranges;
  std::vector<Expr> items;
  int32_t rule = -1;
  int32_t min = 0, max = 0;

  static Expr chars(std::vector<CodeRange> ranges);
  static Expr byte_range(uint8_t first, uint8_t last);
  static Expr seq(std::vector<Expr> items);
  static Expr alt(std::vector<Expr> items);
  static Expr ref(int32_t rule);
  static Expr repeat(Expr item, int32_t min, int32_t max);
  static Expr literal(std::string_view utf8);  // the exact text
  static Expr empty() { return seq({}); }
  static Expr nothing() { return alt({}); }
  static Expr optional(Expr item) { return repeat(std::move(item), 0, 1); }
  static Expr star(Expr item) { return repeat(std::move(item), 0, -1); }
  static Expr plus(Expr item) { return repeat(std::move(item), 1, -1); }
};

// Sorted, merged ranges; complement within [0, kMaxCodePoint]; set difference.
std::vector<CodeRange> normalize(std::vector<CodeRange> ranges);
std::vector<CodeRange> complement(const std::vector<CodeRange>& ranges);
std::vector<CodeRange> subtract(const std::vector<CodeRange>& ranges, const std::vector<CodeRange>& removed);

// One code-point range as alternatives of UTF-8 byte-range sequences (each sequence 1-4 ranges of
// bytes), surrogates excluded; the standard split by encoded length and continuation bytes.
using ByteRangeSeq = std::vector<std::pair<uint8_t, uint8_t>>;
std::vector<ByteRangeSeq> utf8_sequences(CodeRange range);

}  // namespace nanoserve::grammar
