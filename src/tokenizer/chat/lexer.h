// Splits a template into text and tag tokens, applying whitespace control ({%- -%}) and the
// trim_blocks / lstrip_blocks settings Hugging Face renders chat templates with.
#pragma once

#include <string>
#include <vector>

namespace nanoserve::jinja {

struct Token {
  enum class Type { Text, ExprBegin, ExprEnd, StmtBegin, StmtEnd, Name, String, Int, Float, Op, End };
  Type type;
  std::string text;
  int line;
};

std::vector<Token> tokenize(const std::string& source);  // throws Error with the line

}  // namespace nanoserve::jinja
