#include "grammar/expr.h"

#include <algorithm>

#include "util/utf8.h"

namespace nanoserve::grammar {

Expr Expr::chars(std::vector<CodeRange> ranges) {
  Expr e;
  e.kind = Kind::Chars;
  e.ranges = normalize(std::move(ranges));
  return e;
}

Expr Expr::byte_range(uint8_t first, uint8_t last) {
  Expr e;
  e.kind = Kind::Bytes;
  e.ranges = {{first, last}};
  return e;
}

Expr Expr::seq(std::vector<Expr> items) {
  if (items.size() == 1) return std::move(items[0]);
  Expr e;
  e.kind = Kind::Seq;
  e.items = std::move(items);
  return e;
}

Expr Expr::alt(std::vector<Expr> items) {
  if (items.size() == 1) return std::move(items[0]);
  Expr e;
  e.kind = Kind::Alt;
  e.items = std::move(items);
  return e;
}

Expr Expr::ref(int32_t rule) {
  Expr e;
  e.kind = Kind::Ref;
  e.rule = rule;
  return e;
}

Expr Expr::repeat(Expr item, int32_t min, int32_t max) {
  if (min == 1 && max == 1) return item;
  // (x{a,}){b,} is x{ab,} for a, b >= 1: nested unbounded repetitions would make every way of
  // splitting a run of x's between the levels a separate parse.
  if (max < 0 && min >= 1 && item.kind == Kind::Repeat && item.max < 0 && item.min >= 1) {
    item.min = static_cast<int32_t>(std::min<int64_t>(int64_t{item.min} * min, 100000));
    return item;
  }
  Expr e;
  e.kind = Kind::Repeat;
  e.items.push_back(std::move(item));
  e.min = min;
  e.max = max;
  return e;
}

Expr Expr::literal(std::string_view utf8) {
  std::vector<Expr> items;
  for (size_t pos = 0; pos < utf8.size();) {
    const size_t start = pos;
    const char32_t c = next_code_point(utf8, pos);
    if (c == 0xFFFD && utf8.substr(start, pos - start) != kReplacementCharacter) {
      for (size_t i = start; i < pos; ++i) {  // invalid UTF-8 stays the bytes it was
        const auto b = static_cast<uint8_t>(utf8[i]);
        items.push_back(byte_range(b, b));
      }
    } else {
      items.push_back(chars({{c, c}}));
    }
  }
  return seq(std::move(items));
}

std::vector<CodeRange> normalize(std::vector<CodeRange> ranges) {
  std::sort(ranges.begin(), ranges.end(), [](CodeRange a, CodeRange b) { return a.first < b.first; });
  std::vector<CodeRange> out;
  for (CodeRange r : ranges) {
    if (r.first > r.last) continue;
    if (!out.empty() && r.first <= out.back().last + 1) {
      out.back().last = std::max(out.back().last, r.last);
    } else {
      out.push_back(r);
    }
  }
  return out;
}

std::vector<CodeRange> complement(const std::vector<CodeRange>& ranges) {
  std::vector<CodeRange> out;
  char32_t next = 0;
  for (CodeRange r : normalize(ranges)) {
    if (r.first > next) out.push_back({next, r.first - 1});
    next = r.last + 1;
  }
  if (next <= kMaxCodePoint) out.push_back({next, kMaxCodePoint});
  return out;
}

std::vector<CodeRange> subtract(const std::vector<CodeRange>& ranges, const std::vector<CodeRange>& removed) {
  // A \ B = not (not A or B)
  auto not_a = complement(ranges);
  not_a.insert(not_a.end(), removed.begin(), removed.end());
  return complement(not_a);
}

namespace {

// Code points [first, last] that all encode to `length` bytes.
void split_same_length(char32_t first, char32_t last, int length, std::vector<ByteRangeSeq>& out) {
  if (length == 1) {
    out.push_back({{static_cast<uint8_t>(first), static_cast<uint8_t>(last)}});
    return;
  }
  // Split until the range covers whole blocks of continuation bytes below some prefix.
  for (int i = 1; i < length; ++i) {
    const char32_t mask = (char32_t{1} << (6 * i)) - 1;
    if ((first & ~mask) != (last & ~mask)) {
      if ((first & mask) != 0) {
        split_same_length(first, first | mask, length, out);
        split_same_length((first | mask) + 1, last, length, out);
        return;
      }
      if ((last & mask) != mask) {
        split_same_length(first, (last & ~mask) - 1, length, out);
        split_same_length(last & ~mask, last, length, out);
        return;
      }
    }
  }
  std::string a, b;
  append_utf8(a, first);
  append_utf8(b, last);
  ByteRangeSeq seq;
  for (size_t i = 0; i < a.size(); ++i) seq.emplace_back(static_cast<uint8_t>(a[i]), static_cast<uint8_t>(b[i]));
  out.push_back(std::move(seq));
}

}  // namespace

std::vector<ByteRangeSeq> utf8_sequences(CodeRange range) {
  std::vector<ByteRangeSeq> out;
  const char32_t bounds[] = {0x7F, 0x7FF, 0xFFFF, kMaxCodePoint};
  char32_t first = range.first;
  for (int length = 1; length <= 4 && first <= range.last; ++length) {
    const char32_t last = std::min(range.last, bounds[length - 1]);
    if (first > last) continue;
    if (length == 3 && first <= 0xDFFF && last >= 0xD800) {  // surrogates have no UTF-8 encoding
      if (first < 0xD800) split_same_length(first, 0xD7FF, 3, out);
      if (last > 0xDFFF) split_same_length(0xE000, last, 3, out);
    } else {
      split_same_length(first, last, length, out);
    }
    first = last + 1;
  }
  return out;
}

}  // namespace nanoserve::grammar
