#include "grammar/number_range.h"

#include <string>
#include <vector>

namespace nanoserve::grammar {
namespace {

constexpr int32_t kMaxDigits = 20;

Expr digit_range(char first, char last) {
  return Expr::chars({{static_cast<char32_t>(first), static_cast<char32_t>(last)}});
}
Expr any_digits(int32_t count) { return Expr::repeat(digit_range('0', '9'), count, count); }

// Decimal strings of equal length from lo to hi (lo <= hi as numbers).
Expr same_length(const std::string& lo, const std::string& hi) {
  if (lo.empty()) return Expr::empty();
  if (lo.size() == 1) return digit_range(lo[0], hi[0]);
  const std::string lo_rest = lo.substr(1), hi_rest = hi.substr(1);
  if (lo[0] == hi[0]) return Expr::seq({Expr::literal(lo.substr(0, 1)), same_length(lo_rest, hi_rest)});
  const auto n = static_cast<int32_t>(lo_rest.size());
  if (lo_rest == std::string(lo_rest.size(), '0') && hi_rest == std::string(hi_rest.size(), '9')) {
    return Expr::seq({digit_range(lo[0], hi[0]), any_digits(n)});
  }
  std::vector<Expr> alts;
  alts.push_back(Expr::seq({Expr::literal(lo.substr(0, 1)), same_length(lo_rest, std::string(lo_rest.size(), '9'))}));
  if (lo[0] + 1 <= hi[0] - 1)
    alts.push_back(Expr::seq({digit_range(static_cast<char>(lo[0] + 1), static_cast<char>(hi[0] - 1)), any_digits(n)}));
  alts.push_back(Expr::seq({Expr::literal(hi.substr(0, 1)), same_length(std::string(hi_rest.size(), '0'), hi_rest)}));
  return Expr::alt(std::move(alts));
}

uint64_t power_of_ten(size_t n) {
  uint64_t p = 1;
  for (size_t i = 0; i < n; ++i) p *= 10;
  return p;
}

// Non-negative integers in [lo, hi]; hi absent: unbounded (up to kMaxDigits digits).
Expr unsigned_range(uint64_t lo, std::optional<uint64_t> hi) {
  if (hi && *hi < lo) return Expr::nothing();
  std::vector<Expr> alts;
  const size_t lo_digits = std::to_string(lo).size();
  const size_t hi_digits = hi ? std::to_string(*hi).size() : lo_digits;
  for (size_t d = lo_digits; d <= hi_digits; ++d) {
    const uint64_t first = std::max<uint64_t>(lo, d == 1 ? 0 : power_of_ten(d - 1));
    const uint64_t last = d >= 20 ? UINT64_MAX : power_of_ten(d) - 1;
    const uint64_t top = hi ? std::min(*hi, last) : last;
    if (first <= top) alts.push_back(same_length(std::to_string(first), std::to_string(top)));
  }
  if (!hi && lo_digits < static_cast<size_t>(kMaxDigits)) {  // every longer number is larger
    const auto more = static_cast<int32_t>(lo_digits);
    alts.push_back(Expr::seq({digit_range('1', '9'), Expr::repeat(digit_range('0', '9'), more, kMaxDigits - 1)}));
  }
  return Expr::alt(std::move(alts));
}

uint64_t magnitude(int64_t v) { return v < 0 ? uint64_t(0) - static_cast<uint64_t>(v) : static_cast<uint64_t>(v); }

}  // namespace

Expr integer_range(std::optional<int64_t> low, std::optional<int64_t> high) {
  std::vector<Expr> alts;
  if (!low || *low < 0) {  // negative part: "-" then magnitudes in [max(1, -high), -low]
    const uint64_t from = high && *high < 0 ? magnitude(*high) : 1;
    std::optional<uint64_t> to;
    if (low) to = magnitude(*low);
    alts.push_back(Expr::seq({Expr::literal("-"), unsigned_range(from, to)}));
  }
  if (!high || *high >= 0) {
    std::optional<uint64_t> to;
    if (high) to = static_cast<uint64_t>(*high);
    alts.push_back(unsigned_range(low && *low > 0 ? static_cast<uint64_t>(*low) : 0, to));
  }
  return Expr::alt(std::move(alts));
}

Expr number_range(const NumberBounds& b) {
  std::optional<int64_t> low = b.low, high = b.high;
  // Integral values: the bound itself only when inclusive.
  std::optional<int64_t> int_low = low, int_high = high;
  if (int_low && b.low_exclusive) ++*int_low;
  if (int_high && b.high_exclusive) --*int_high;
  const Expr zeros = Expr::optional(Expr::seq({Expr::literal("."), Expr::repeat(Expr::literal("0"), 1, kMaxDigits)}));
  std::vector<Expr> alts{Expr::seq({integer_range(int_low, int_high), zeros})};
  // Values strictly between integers: I.F lies in (I, I + 1), -I.F in (-I - 1, -I).
  const Expr fraction = Expr::seq({Expr::literal("."), Expr::repeat(digit_range('0', '9'), 0, kMaxDigits - 1),
                                   digit_range('1', '9'), Expr::repeat(digit_range('0', '9'), 0, kMaxDigits - 1)});
  {
    const uint64_t from = low && *low > 0 ? static_cast<uint64_t>(*low) : 0;
    std::optional<uint64_t> to;
    if (high) to = *high >= 1 ? std::optional<uint64_t>(static_cast<uint64_t>(*high) - 1) : std::nullopt;
    if (!high || *high >= 1) alts.push_back(Expr::seq({unsigned_range(from, to), fraction}));
  }
  {
    const uint64_t from = high && *high < 0 ? magnitude(*high) : 0;
    std::optional<uint64_t> to;
    if (low) to = *low <= -1 ? std::optional<uint64_t>(magnitude(*low) - 1) : std::nullopt;
    if (!low || *low <= -1) alts.push_back(Expr::seq({Expr::literal("-"), unsigned_range(from, to), fraction}));
  }
  return Expr::alt(std::move(alts));
}

}  // namespace nanoserve::grammar
