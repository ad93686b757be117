// A stranger's GBNF grammar (llama.cpp's `grammar` field, vLLM's guided_grammar) and regex
// (guided_regex) through the parsers and compiler, then a few matcher steps over raw bytes.
#include <cstdint>
#include <string_view>

#include "grammar/gbnf.h"
#include "grammar/matcher.h"
#include "grammar/regex.h"
#include "util/error.h"
#include "walk_matcher.h"

namespace {
const std::shared_ptr<const nanoserve::grammar::TokenTrie>& byte_trie() {
  static const auto t = [] {
    std::vector<std::pair<int32_t, std::string>> tokens;
    for (int b = 0; b < 256; ++b) tokens.emplace_back(b, std::string(1, static_cast<char>(b)));
    return std::make_shared<const nanoserve::grammar::TokenTrie>(256, std::move(tokens));
  }();
  return t;
}
}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace nanoserve::grammar;
  if (size == 0) return 0;
  const std::string_view text(reinterpret_cast<const char*>(data + 1), size - 1);
  try {
    std::shared_ptr<const Grammar> g;
    if (data[0] & 1) {
      g = std::make_shared<const Grammar>(parse_gbnf(text));
    } else {
      GrammarBuilder b;
      const int32_t root = b.declare("root");
      b.define(root, parse_regex(text, data[0] & 2 ? RegexMatch::Search : RegexMatch::Whole));
      g = std::make_shared<const Grammar>(b.compile(root));
    }
    Matcher m(g, byte_trie());
    walk_lowest_tokens(m, 8);
  } catch (const nanoserve::Error&) {}
  return 0;
}
