// A stranger's JSON Schema (response_format, guided_json, a tool's parameters) through the grammar
// compiler, then a few steps of the matcher over the demo vocabulary: every failure must be an
// Error naming the problem, within bounded time and memory.
#include <cstdint>
#include <string_view>

#include "grammar/json_schema.h"
#include "grammar/matcher.h"
#include "tokenizer/tokenizer.h"
#include "util/error.h"
#include "walk_matcher.h"
#include "util/json_parse.h"

namespace {
const std::shared_ptr<const nanoserve::grammar::TokenTrie>& trie() {
  static const auto t = nanoserve::grammar::TokenTrie::of(nanoserve::Tokenizer::from_file(NANOSERVE_DEMO_DIR));
  return t;
}
}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace nanoserve;
  try {
    const auto schema = parse_ordered_json(std::string_view(reinterpret_cast<const char*>(data), size), "schema");
    auto g = std::make_shared<const grammar::Grammar>(grammar::compile_json_schema(schema));
    grammar::Matcher m(g, trie());
    walk_lowest_tokens(m, 4);
  } catch (const Error&) {}
  return 0;
}
