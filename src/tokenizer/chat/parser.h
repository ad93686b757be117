// Builds the syntax tree of a chat template from its tokens.
#pragma once

#include <string>

#include "tokenizer/chat/ast.h"

namespace nanoserve::jinja {

Body parse(const std::string& source);  // throws Error naming the template line

}  // namespace nanoserve::jinja
