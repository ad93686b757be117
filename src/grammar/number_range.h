// Numeric bounds as grammar: the decimal strings of the integers in a range (no leading zeros), and
// JSON numbers between integer bounds. JSON Schema's minimum/maximum become text a matcher can
// check digit by digit.
#pragma once

#include <cstdint>
#include <optional>

#include "grammar/expr.h"

namespace nanoserve::grammar {

// Integers in [low, high] as JSON writes them; absent bounds are open (at most 20 digits then).
Expr integer_range(std::optional<int64_t> low, std::optional<int64_t> high);

// JSON numbers x with low <= x <= high (or < and > where exclusive), for integer bounds; no
// exponent, at most 20 fraction digits.
struct NumberBounds {
  std::optional<int64_t> low, high;
  bool low_exclusive = false, high_exclusive = false;
};
Expr number_range(const NumberBounds& bounds);

}  // namespace nanoserve::grammar
