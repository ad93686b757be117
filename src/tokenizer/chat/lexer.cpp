#include "tokenizer/chat/lexer.h"

#include <cctype>

#include "util/error.h"

namespace nanoserve::jinja {

namespace {

using T = Token::Type;

int line_of(const std::string& s, size_t pos) {
  int line = 1;
  for (size_t i = 0; i < pos && i < s.size(); ++i) line += s[i] == '\n';
  return line;
}

// Tokens inside {{ }} or {% %}, from `pos` up to the closing delimiter; returns the position after it.
size_t lex_tag(const std::string& s, size_t pos, const std::string& close, std::vector<Token>& out) {
  static const char* kOps[] = {"**", "//", "==", "!=", "<=", ">=", "+", "-", "*", "/", "%", "~", "<",
                               ">",  "=",  "(",  ")",  "[",  "]",  "{", "}", ",", ".", ":", "|"};
  while (pos < s.size()) {
    const char c = s[pos];
    const int line = line_of(s, pos);
    if (std::isspace(static_cast<unsigned char>(c))) {
      ++pos;
    } else if ((c == '-' && s.compare(pos + 1, close.size(), close) == 0) || s.compare(pos, close.size(), close) == 0) {
      return pos + (c == '-' && s.compare(pos, close.size(), close) != 0 ? 1 : 0) + close.size();
    } else if (std::isalpha(static_cast<unsigned char>(c)) || c == '_') {
      size_t end = pos;
      while (end < s.size() && (std::isalnum(static_cast<unsigned char>(s[end])) || s[end] == '_')) ++end;
      out.push_back({T::Name, s.substr(pos, end - pos), line});
      pos = end;
    } else if (std::isdigit(static_cast<unsigned char>(c))) {
      size_t end = pos;
      bool is_float = false;
      while (end < s.size() && (std::isdigit(static_cast<unsigned char>(s[end])) ||
                                (s[end] == '.' && !is_float && end + 1 < s.size() &&
                                 std::isdigit(static_cast<unsigned char>(s[end + 1]))))) {
        is_float |= s[end] == '.';
        ++end;
      }
      out.push_back({is_float ? T::Float : T::Int, s.substr(pos, end - pos), line});
      pos = end;
    } else if (c == '"' || c == '\'') {
      std::string text;
      size_t i = pos + 1;
      for (; i < s.size() && s[i] != c; ++i) {
        if (s[i] == '\\' && i + 1 < s.size()) {
          const char e = s[++i];
          text += e == 'n' ? '\n' : e == 't' ? '\t' : e == 'r' ? '\r' : e;
        } else {
          text += s[i];
        }
      }
      if (i >= s.size()) fail("chat template line {}: unterminated string", line);
      out.push_back({T::String, text, line});
      pos = i + 1;
    } else {
      bool matched = false;
      for (const char* op : kOps) {
        const std::string o(op);
        if (s.compare(pos, o.size(), o) == 0) {
          out.push_back({T::Op, o, line});
          pos += o.size();
          matched = true;
          break;
        }
      }
      if (!matched) fail("chat template line {}: unexpected character '{}'", line, c);
    }
  }
  fail("chat template line {}: missing '{}'", line_of(s, pos), close);
}

// whole: strip all trailing whitespace ({%-). line_only: strip the spaces and tabs that follow the
// last newline, if nothing else is on that line (lstrip_blocks); starts_line says whether the text
// itself begins a line.
void strip_trailing(std::string& text, bool whole, bool line_only, bool starts_line) {
  size_t end = text.size();
  while (end > 0 && std::isspace(static_cast<unsigned char>(text[end - 1]))) {
    if (line_only && !whole && text[end - 1] == '\n') break;
    --end;
  }
  if (whole || (line_only && (end > 0 ? text[end - 1] == '\n' : starts_line))) text.resize(end);
}

}  // namespace

std::vector<Token> tokenize(const std::string& s) {
  std::vector<Token> out;
  size_t pos = 0;
  bool strip_next = false, trim_newline = false;
  while (pos <= s.size()) {
    size_t open = s.find('{', pos);
    while (open != std::string::npos && open + 1 < s.size() && s[open + 1] != '{' && s[open + 1] != '%' &&
           s[open + 1] != '#') {
      open = s.find('{', open + 1);
    }
    if (open + 1 >= s.size()) open = std::string::npos;
    std::string text = s.substr(pos, open == std::string::npos ? std::string::npos : open - pos);
    bool starts_line = pos == 0 || s[pos - 1] == '\n';
    if (strip_next) {
      text.erase(
          0, text.find_first_not_of(" \t\r\n") == std::string::npos ? text.size() : text.find_first_not_of(" \t\r\n"));
    } else if (trim_newline && !text.empty() && text[0] == '\n') {
      text.erase(0, 1);  // trim_blocks: the newline after a block tag
      starts_line = true;
    }
    if (open == std::string::npos) {
      if (!text.empty()) out.push_back({T::Text, text, line_of(s, pos)});
      break;
    }
    const char kind = s[open + 1];
    const bool minus = open + 2 < s.size() && s[open + 2] == '-';
    const bool plus = open + 2 < s.size() && s[open + 2] == '+';
    // {%- strips all whitespace before; a block tag alone on its line loses its indentation (lstrip_blocks).
    strip_trailing(text, minus, kind != '{' && !plus, starts_line);
    if (!text.empty()) out.push_back({T::Text, text, line_of(s, pos)});
    const size_t body = open + 2 + (minus || plus ? 1 : 0);
    size_t after;
    if (kind == '#') {
      const size_t close = s.find("#}", body);
      if (close == std::string::npos) fail("chat template line {}: unterminated comment", line_of(s, open));
      after = close + 2;
      strip_next = close > 0 && s[close - 1] == '-';
    } else {
      const bool expr = kind == '{';
      out.push_back({expr ? T::ExprBegin : T::StmtBegin, "", line_of(s, open)});
      after = lex_tag(s, body, expr ? "}}" : "%}", out);
      out.push_back({expr ? T::ExprEnd : T::StmtEnd, "", line_of(s, after)});
      strip_next = s[after - 3] == '-';
    }
    trim_newline = kind != '{';
    pos = after;
  }
  out.push_back({T::End, "", line_of(s, s.size())});
  return out;
}

}  // namespace nanoserve::jinja
