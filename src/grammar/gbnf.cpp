#include "grammar/gbnf.h"

#include <fmt/format.h>

#include "util/error.h"
#include "util/utf8.h"

namespace nanoserve::grammar {
namespace {

constexpr int kMaxNesting = 256;

class GbnfParser {
 public:
  explicit GbnfParser(std::string_view text) : text_(text) {}

  Grammar parse() {
    skip_space(true);
    while (pos_ < text_.size()) {
      const std::string name = parse_name();
      skip_space(false);
      if (text_.substr(pos_, 3) != "::=") fail(fmt::format("expected '::=' after rule name '{}'", name));
      pos_ += 3;
      skip_space(true);
      const int32_t rule = rule_id(name);
      if (builder_.defined(rule)) fail(fmt::format("rule '{}' is defined twice", name));
      builder_.define(rule, parse_alternatives(false, 0));
      skip_space(true);
    }
    const int32_t root = builder_.find("root");
    if (root < 0) throw Error("grammar: no rule named 'root' (the grammar starts there)");
    return builder_.compile(root);
  }

 private:
  [[noreturn]] void fail(const std::string& message) const {
    size_t line = 1, column = 1;
    for (size_t i = 0; i < pos_ && i < text_.size(); ++i) {
      if (text_[i] == '\n') {
        ++line;
        column = 1;
      } else {
        ++column;
      }
    }
    throw Error(fmt::format("grammar: line {}, column {}: {}", line, column, message));
  }

  bool at_end() const { return pos_ >= text_.size(); }
  char peek() const { return at_end() ? '\0' : text_[pos_]; }

  // Spaces and comments; newlines too when `newlines` (inside parentheses, after ::= and |).
  void skip_space(bool newlines) {
    while (!at_end()) {
      const char c = text_[pos_];
      if (c == '#') {
        while (!at_end() && text_[pos_] != '\n') ++pos_;
      } else if (c == ' ' || c == '\t' || c == '\r' || (newlines && c == '\n')) {
        ++pos_;
      } else {
        break;
      }
    }
  }

  static bool is_name_char(char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' || c == '_';
  }

  std::string parse_name() {
    const size_t start = pos_;
    while (!at_end() && is_name_char(text_[pos_])) ++pos_;
    if (pos_ == start) fail(fmt::format("expected a rule name, found '{}'", std::string(1, peek())));
    return std::string(text_.substr(start, pos_ - start));
  }

  int32_t rule_id(const std::string& name) {
    const int32_t id = builder_.find(name);
    return id >= 0 ? id : builder_.declare(name);
  }

  // A line that starts with '|' continues the alternatives of the rule above it.
  bool continues_on_next_line() const {
    size_t p = pos_;
    while (p < text_.size() && (text_[p] == ' ' || text_[p] == '\t' || text_[p] == '\r' || text_[p] == '\n')) ++p;
    return p < text_.size() && text_[p] == '|' && p > pos_;
  }

  Expr parse_alternatives(bool nested, int depth) {
    if (depth > kMaxNesting) fail("parentheses nested too deeply");
    std::vector<Expr> alts{parse_sequence(nested, depth)};
    while (true) {
      if (!nested && peek() == '\n' && continues_on_next_line()) skip_space(true);
      if (peek() != '|') break;
      ++pos_;
      skip_space(true);
      alts.push_back(parse_sequence(nested, depth));
    }
    return Expr::alt(std::move(alts));
  }

  Expr parse_sequence(bool nested, int depth) {
    std::vector<Expr> items;
    while (!at_end()) {
      const char c = peek();
      if (c == '|' || c == ')' || (c == '\n' && !nested)) break;
      Expr item;
      if (c == '"') {
        item = parse_literal();
      } else if (c == '[') {
        item = parse_class();
      } else if (c == '.') {
        ++pos_;
        item = Expr::chars({{0, kMaxCodePoint}});
      } else if (c == '(') {
        ++pos_;
        skip_space(true);
        item = parse_alternatives(true, depth + 1);
        if (peek() != ')') fail("expected ')'");
        ++pos_;
      } else if (is_name_char(c)) {
        const size_t start = pos_;
        const std::string name = parse_name();
        skip_space(false);
        if (text_.substr(pos_, 3) == "::=") {  // the next rule begins: this sequence ended a line early
          pos_ = start;
          break;
        }
        pos_ = start + name.size();
        item = Expr::ref(rule_id(name));
      } else {
        fail(fmt::format("unexpected '{}'", std::string(1, c)));
      }
      skip_space(nested);
      items.push_back(parse_postfix(std::move(item), nested));
    }
    return Expr::seq(std::move(items));
  }

  Expr parse_postfix(Expr item, bool nested) {
    while (true) {
      const char c = peek();
      int32_t min = 0, max = -1;
      if (c == '*') {
        ++pos_;
      } else if (c == '+') {
        min = 1;
        ++pos_;
      } else if (c == '?') {
        max = 1;
        ++pos_;
      } else if (c == '{') {
        ++pos_;
        skip_space(true);
        min = max = parse_count();
        skip_space(true);
        if (peek() == ',') {
          ++pos_;
          skip_space(true);
          max = (peek() == '}') ? -1 : parse_count();
          skip_space(true);
        }
        if (peek() != '}') fail("expected '}' to close a repetition count");
        ++pos_;
        if (max >= 0 && max < min)
          fail(fmt::format("repetition {{{},{}}}: the maximum is below the minimum", min, max));
      } else {
        return item;
      }
      item = Expr::repeat(std::move(item), min, max);
      skip_space(nested);
    }
  }

  int32_t parse_count() {
    const size_t start = pos_;
    int64_t value = 0;
    while (!at_end() && text_[pos_] >= '0' && text_[pos_] <= '9') {
      value = value * 10 + (text_[pos_++] - '0');
      if (value > 100000) fail("repetition count over 100000");
    }
    if (pos_ == start) fail("expected a number in a repetition count");
    return static_cast<int32_t>(value);
  }

  char32_t parse_hex(int digits) {
    char32_t value = 0;
    for (int i = 0; i < digits; ++i) {
      const char c = peek();
      const int d = hex_digit(c);
      if (d < 0) fail(fmt::format("expected {} hexadecimal digits", digits));
      value = value * 16 + static_cast<char32_t>(d);
      ++pos_;
    }
    if (value > kMaxCodePoint) fail("code point past U+10FFFF");
    return value;
  }

  // One character of a literal or class, escapes decoded.
  char32_t parse_char() {
    if (at_end()) fail("unexpected end of the grammar");
    if (text_[pos_] != '\\') return next_code_point(text_, pos_);
    ++pos_;
    const char c = peek();
    ++pos_;
    switch (c) {
      case 'n': return '\n';
      case 'r': return '\r';
      case 't': return '\t';
      case '0': return 0;
      case 'x': return parse_hex(2);
      case 'u': return parse_hex(4);
      case 'U': return parse_hex(8);
      case '\\':
      case '"':
      case '[':
      case ']':
      case '-':
      case '^':
      case '.':
      case '/':
      case '\'': return static_cast<char32_t>(c);
      default: --pos_; fail(fmt::format("unknown escape '\\{}'", std::string(1, c)));
    }
  }

  Expr parse_literal() {
    ++pos_;  // "
    std::vector<Expr> chars;
    while (peek() != '"') {
      if (at_end() || peek() == '\n') fail("unterminated string literal");
      const char32_t c = parse_char();
      chars.push_back(Expr::chars({{c, c}}));
    }
    ++pos_;
    return Expr::seq(std::move(chars));
  }

  Expr parse_class() {
    ++pos_;  // [
    const bool negated = peek() == '^';
    if (negated) ++pos_;
    std::vector<CodeRange> ranges;
    while (peek() != ']') {
      if (at_end() || peek() == '\n') fail("unterminated character class");
      const char32_t first = parse_char();
      char32_t last = first;
      if (peek() == '-' && pos_ + 1 < text_.size() && text_[pos_ + 1] != ']') {
        ++pos_;
        last = parse_char();
        if (last < first) fail("character range out of order");
      }
      ranges.push_back({first, last});
    }
    ++pos_;
    return Expr::chars(negated ? complement(ranges) : ranges);
  }

  std::string_view text_;
  size_t pos_ = 0;
  GrammarBuilder builder_;
};

}  // namespace

Grammar parse_gbnf(std::string_view text) { return GbnfParser(text).parse(); }

}  // namespace nanoserve::grammar
