// A compiled grammar: rules lowered to flat sequences of byte sets and rule calls, ready for the
// matcher. Rules are built as Expr trees (GBNF, regex and JSON Schema all do), then compile()
// lowers repetitions and nested alternatives into helper rules, splits characters into UTF-8 byte
// sets, and refuses what the matcher cannot run (undefined rules, left recursion).
#pragma once

#include <array>
#include <cstdint>
#include <string>
#include <vector>

#include "grammar/expr.h"

namespace nanoserve::grammar {

struct ByteSet {
  std::array<uint64_t, 4> bits{};
  bool has(uint8_t b) const { return (bits[b >> 6] >> (b & 63)) & 1; }
  void add(uint8_t b) { bits[b >> 6] |= uint64_t{1} << (b & 63); }
  void add_range(uint8_t first, uint8_t last) {
    for (int b = first; b <= last; ++b) add(static_cast<uint8_t>(b));
  }
  bool subset_of(const ByteSet& other) const {
    return !(bits[0] & ~other.bits[0]) && !(bits[1] & ~other.bits[1]) && !(bits[2] & ~other.bits[2]) &&
           !(bits[3] & ~other.bits[3]);
  }
  bool operator==(const ByteSet&) const = default;
};

// One element of a flattened alternative.
struct Element {
  enum class Kind : uint8_t { Bytes, Call, End };
  Kind kind;
  int32_t value;  // Bytes: index into Grammar::byte_sets; Call: rule id; End: the rule it ends
};

// The matcher's form: every alternative of every rule laid out in `elements`, each ended by End.
struct Grammar {
  std::vector<Element> elements;
  std::vector<ByteSet> byte_sets;
  std::vector<std::vector<int32_t>> alternatives;  // per rule: where each alternative starts
  std::vector<std::string> rule_names;
  int32_t root = 0;
};

class GrammarBuilder {
 public:
  // A rule named `name`, defined later (or now) with define(); names must be unique.
  int32_t declare(const std::string& name);
  void define(int32_t rule, Expr body);
  bool defined(int32_t rule) const { return defined_[static_cast<size_t>(rule)]; }
  int32_t find(const std::string& name) const;  // -1 when absent
  const std::string& name(int32_t rule) const { return names_[static_cast<size_t>(rule)]; }
  int32_t rule_count() const { return static_cast<int32_t>(names_.size()); }

  // Throws Error naming the problem: an undefined rule, left recursion, or more than
  // kMaxElements elements after lowering.
  Grammar compile(int32_t root) const;

  static constexpr size_t kMaxElements = 4'000'000;

 private:
  std::vector<std::string> names_;
  std::vector<Expr> bodies_;
  std::vector<bool> defined_;
};

}  // namespace nanoserve::grammar
