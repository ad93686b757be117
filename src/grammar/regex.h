// Regular expressions (the ECMAScript subset JSON Schema `pattern` and vLLM's guided_regex use) as
// grammar expressions: literals, escapes (\d \w \s and their negations, \xHH, \uHHHH), classes,
// `.`, groups, alternation and the quantifiers * + ? {n} {n,} {n,m}. Backreferences, lookaround
// and word boundaries cannot be expressed in a context-free grammar and are refused by name.
#pragma once

#include <string_view>

#include "grammar/expr.h"

namespace nanoserve::grammar {

enum class RegexMatch {
  Whole,   // the text is exactly one match (guided_regex)
  Search,  // the text contains a match, unless anchored by ^ and $ (JSON Schema `pattern`)
};

// Throws Error naming the unsupported construct or the syntax error and where it is.
Expr parse_regex(std::string_view pattern, RegexMatch match);

// The same language written inside a JSON string: characters that JSON must escape (", \ and
// control characters) appear in their escaped form, as JSON.stringify writes them.
Expr as_json_string_content(const Expr& e);

}  // namespace nanoserve::grammar
