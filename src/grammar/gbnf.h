// llama.cpp's GBNF grammar syntax, so that users' grammars carry over: `name ::= alternatives`,
// "literals", [character classes] ([^...] negated), `.` for any character, ( groups ), and the
// postfix operators * + ? {m} {m,} {m,n}. Comments run from # to the end of the line. The grammar
// starts at the rule named `root`.
#pragma once

#include <string_view>

#include "grammar/grammar.h"

namespace nanoserve::grammar {

// Throws Error with the line and column of the first mistake.
Grammar parse_gbnf(std::string_view text);

}  // namespace nanoserve::grammar
