#include "grammar/regex.h"

#include <fmt/format.h>

#include "util/error.h"
#include "util/utf8.h"

namespace nanoserve::grammar {
namespace {

constexpr int kMaxNesting = 256;
constexpr int32_t kMaxCount = 100000;

const std::vector<CodeRange> kDigit = {{'0', '9'}};
const std::vector<CodeRange> kWord = {{'0', '9'}, {'A', 'Z'}, {'_', '_'}, {'a', 'z'}};
const std::vector<CodeRange> kSpace = {{'\t', '\r'},     {' ', ' '},       {0xA0, 0xA0},     {0x1680, 0x1680},
                                       {0x2000, 0x200A}, {0x2028, 0x2029}, {0x202F, 0x202F}, {0x205F, 0x205F},
                                       {0x3000, 0x3000}, {0xFEFF, 0xFEFF}};

class RegexParser {
 public:
  explicit RegexParser(std::string_view pattern) : p_(pattern) {}

  Expr parse(RegexMatch match) {
    std::vector<Expr> branches;
    do {
      bool start_anchor = false, end_anchor = false;
      if (peek() == '^') {
        start_anchor = true;
        ++pos_;
      }
      Expr body = parse_sequence(0, &end_anchor);
      if (match == RegexMatch::Search) {
        const Expr any = Expr::star(Expr::chars({{0, kMaxCodePoint}}));
        std::vector<Expr> items;
        if (!start_anchor) items.push_back(any);
        items.push_back(std::move(body));
        if (!end_anchor) items.push_back(any);
        body = Expr::seq(std::move(items));
      }
      branches.push_back(std::move(body));
    } while (eat('|'));
    if (!at_end()) fail("unbalanced ')'");
    return Expr::alt(std::move(branches));
  }

 private:
  [[noreturn]] void fail(const std::string& message) const {
    throw Error(fmt::format("regex /{}/: {} (at offset {})",
                            p_.size() > 200 ? std::string(p_.substr(0, 200)) + "..." : std::string(p_), message, pos_));
  }
  bool at_end() const { return pos_ >= p_.size(); }
  char peek() const { return at_end() ? '\0' : p_[pos_]; }
  bool eat(char c) {
    if (peek() != c) return false;
    ++pos_;
    return true;
  }

  Expr parse_alternatives(int depth) {
    if (depth > kMaxNesting) fail("groups nested too deeply");
    std::vector<Expr> branches;
    do {
      branches.push_back(parse_sequence(depth, nullptr));
    } while (eat('|'));
    return Expr::alt(std::move(branches));
  }

  // end_anchor: where a trailing $ is allowed (top level), set when present.
  Expr parse_sequence(int depth, bool* end_anchor) {
    std::vector<Expr> items;
    while (!at_end() && peek() != '|' && peek() != ')') {
      if (peek() == '$') {
        ++pos_;
        if (!end_anchor || !(at_end() || peek() == '|')) fail("'$' is only supported at the end of the pattern");
        *end_anchor = true;
        break;
      }
      if (peek() == '^') fail("'^' is only supported at the start of the pattern");
      items.push_back(parse_quantified(depth));
    }
    return Expr::seq(std::move(items));
  }

  Expr parse_quantified(int depth) {
    Expr atom = parse_atom(depth);
    while (true) {
      int32_t min = 0, max = -1;
      if (eat('*')) {
      } else if (eat('+')) {
        min = 1;
      } else if (eat('?')) {
        max = 1;
      } else if (peek() == '{' && counted(min, max)) {
      } else {
        return atom;
      }
      if (peek() == '?' || peek() == '+') ++pos_;  // lazy or possessive: the same language
      atom = Expr::repeat(std::move(atom), min, max);
    }
  }

  // {n}, {n,}, {n,m}; false (and nothing consumed) when the brace is a literal.
  bool counted(int32_t& min, int32_t& max) {
    const size_t start = pos_++;
    auto number = [&](int32_t& out) {
      const size_t begin = pos_;
      int64_t v = 0;
      while (peek() >= '0' && peek() <= '9') {
        v = v * 10 + (p_[pos_++] - '0');
        if (v > kMaxCount) fail(fmt::format("repetition count over {}", kMaxCount));
      }
      out = static_cast<int32_t>(v);
      return pos_ > begin;
    };
    if (!number(min)) {
      pos_ = start;
      return false;
    }
    max = min;
    if (eat(',')) {
      if (!number(max)) max = -1;
    }
    if (!eat('}')) {
      pos_ = start;
      return false;
    }
    if (max >= 0 && max < min) fail("repetition with its maximum below its minimum");
    return true;
  }

  Expr parse_atom(int depth) {
    const char c = peek();
    if (c == '(') {
      ++pos_;
      if (eat('?')) {
        if (eat(':')) {
        } else if (peek() == '<' && pos_ + 1 < p_.size() && p_[pos_ + 1] != '=' && p_[pos_ + 1] != '!') {
          while (!at_end() && p_[pos_] != '>') ++pos_;  // a named group is a group
          if (!eat('>')) fail("unterminated group name");
        } else {
          fail("lookahead and lookbehind are not supported");
        }
      }
      Expr inner = parse_alternatives(depth + 1);
      if (!eat(')')) fail("missing ')'");
      return inner;
    }
    if (c == '[') return parse_class();
    if (c == '.') {
      ++pos_;
      return Expr::chars(complement({{'\n', '\n'}, {'\r', '\r'}, {0x2028, 0x2029}}));
    }
    if (c == '*' || c == '+' || c == '?') fail(fmt::format("nothing to repeat before '{}'", std::string(1, c)));
    if (c == '\\') {
      ++pos_;
      return Expr::chars(parse_escape(false));
    }
    const char32_t cp = next_code_point(p_, pos_);
    return Expr::chars({{cp, cp}});
  }

  char32_t hex(int digits) {
    char32_t v = 0;
    for (int i = 0; i < digits; ++i) {
      const char c = peek();
      const int d = hex_digit(c);
      if (d < 0) fail("bad hexadecimal escape");
      v = v * 16 + static_cast<char32_t>(d);
      ++pos_;
    }
    return v;
  }

  // After a backslash: the characters the escape stands for.
  std::vector<CodeRange> parse_escape(bool in_class) {
    if (at_end()) fail("pattern ends with a backslash");
    const char c = p_[pos_++];
    auto one = [](char32_t x) { return std::vector<CodeRange>{{x, x}}; };
    switch (c) {
      case 'd': return kDigit;
      case 'D': return complement(kDigit);
      case 'w': return kWord;
      case 'W': return complement(kWord);
      case 's': return kSpace;
      case 'S': return complement(kSpace);
      case 'n': return one('\n');
      case 'r': return one('\r');
      case 't': return one('\t');
      case 'f': return one('\f');
      case 'v': return one('\v');
      case '0': return one(0);
      case 'x': return one(hex(2));
      case 'u':
        if (eat('{')) {
          char32_t v = 0;
          while (peek() != '}') {
            v = v * 16 + hex(1);
            if (v > kMaxCodePoint) fail("code point past U+10FFFF");
          }
          ++pos_;
          return one(v);
        }
        return one(hex(4));
      case 'b':
        if (in_class) return one('\b');
        fail("word boundaries (\\b) are not supported");
      case 'B': fail("word boundaries (\\B) are not supported");
      case 'p':
      case 'P': fail("Unicode property classes (\\p{...}) are not supported");
      case 'k': fail("backreferences are not supported");
      default:
        if (c >= '1' && c <= '9') fail("backreferences are not supported");
        if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'))
          fail(fmt::format("unknown escape '\\{}'", std::string(1, c)));
        --pos_;
        const char32_t cp = next_code_point(p_, pos_);
        return one(cp);
    }
  }

  Expr parse_class() {
    ++pos_;  // [
    const bool negated = eat('^');
    std::vector<CodeRange> ranges;
    bool first = true;
    while (at_end() || peek() != ']' || first) {
      if (at_end()) fail("unterminated character class");
      first = false;
      std::vector<CodeRange> item;
      if (eat('\\')) {
        item = parse_escape(true);
      } else {
        const char32_t cp = next_code_point(p_, pos_);
        item = {{cp, cp}};
      }
      if (item.size() == 1 && item[0].first == item[0].last && peek() == '-' && pos_ + 1 < p_.size() &&
          p_[pos_ + 1] != ']') {
        ++pos_;
        char32_t last;
        if (eat('\\')) {
          const auto end = parse_escape(true);
          if (end.size() != 1 || end[0].first != end[0].last) fail("a class escape cannot end a range");
          last = end[0].first;
        } else {
          last = next_code_point(p_, pos_);
        }
        if (last < item[0].first) fail("character range out of order");
        item[0].last = last;
      }
      ranges.insert(ranges.end(), item.begin(), item.end());
    }
    ++pos_;
    return Expr::chars(negated ? complement(ranges) : ranges);
  }

  std::string_view p_;
  size_t pos_ = 0;
};

std::string json_escape_of(char32_t c) {
  switch (c) {
    case '"': return "\\\"";
    case '\\': return "\\\\";
    case '\n': return "\\n";
    case '\r': return "\\r";
    case '\t': return "\\t";
    case '\b': return "\\b";
    case '\f': return "\\f";
    default: return fmt::format("\\u{:04x}", static_cast<uint32_t>(c));
  }
}

}  // namespace

Expr parse_regex(std::string_view pattern, RegexMatch match) { return RegexParser(pattern).parse(match); }

Expr as_json_string_content(const Expr& e) {
  if (e.kind == Expr::Kind::Chars) {
    const std::vector<CodeRange> escaped = {{0, 0x1F}, {'"', '"'}, {'\\', '\\'}};
    std::vector<Expr> alts{Expr::chars(subtract(e.ranges, escaped))};
    for (CodeRange r : e.ranges) {
      for (char32_t c = r.first; c <= std::min<char32_t>(r.last, '\\'); ++c) {
        if (c < 0x20 || c == '"' || c == '\\') alts.push_back(Expr::literal(json_escape_of(c)));
      }
    }
    return Expr::alt(std::move(alts));
  }
  Expr out = e;
  for (Expr& item : out.items) item = as_json_string_content(item);
  return out;
}

}  // namespace nanoserve::grammar
