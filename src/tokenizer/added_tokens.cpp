#include "tokenizer/added_tokens.h"

#include <utf8proc.h>

#include <algorithm>

#include "util/error.h"
#include "util/json_parse.h"
#include "util/utf8.h"

namespace nanoserve {

AddedToken AddedToken::from_json(const nlohmann::json& j) {
  AddedToken t;
  t.id = static_cast<int32_t>(json_integer(j.at("id"), 0, INT32_MAX, "added token id"));
  t.content = j.at("content").get<std::string>();
  t.special = j.value("special", false);
  t.lstrip = j.value("lstrip", false);
  t.rstrip = j.value("rstrip", false);
  t.single_word = j.value("single_word", false);
  t.normalized = j.value("normalized", !t.special);  // the default of Hugging Face's AddedToken
  if (t.content.empty()) fail("added token {} has empty content", t.id);
  return t;
}

void AddedTokenMatcher::add(const AddedToken& token) {
  int32_t node = 0;
  for (unsigned char byte : token.content) {
    int32_t next = child(node, byte);
    if (next < 0) {
      next = static_cast<int32_t>(nodes_.size());
      nodes_.emplace_back();
      auto& children = nodes_[static_cast<size_t>(node)].children;
      children.insert(std::lower_bound(children.begin(), children.end(), std::make_pair(byte, int32_t{0})),
                      {byte, next});
    }
    node = next;
  }
  nodes_[static_cast<size_t>(node)].token = static_cast<int32_t>(tokens_.size());
  tokens_.push_back(token);
  first_byte_[static_cast<unsigned char>(token.content[0])] = true;
}

int32_t AddedTokenMatcher::child(int32_t node, unsigned char byte) const {
  const auto& children = nodes_[static_cast<size_t>(node)].children;
  auto it = std::lower_bound(children.begin(), children.end(), std::make_pair(byte, int32_t{0}));
  return it != children.end() && it->first == byte ? it->second : -1;
}

int32_t AddedTokenMatcher::longest_at(std::string_view text, size_t pos, bool match_special) const {
  int32_t found = -1;
  int32_t node = 0;
  for (size_t i = pos; i < text.size(); ++i) {
    node = child(node, static_cast<unsigned char>(text[i]));
    if (node < 0) break;
    const int32_t t = nodes_[static_cast<size_t>(node)].token;
    if (t >= 0 && (match_special || !tokens_[static_cast<size_t>(t)].special)) found = t;
  }
  return found;
}

namespace {
// Rust's char::is_alphanumeric plus '_': the word characters single_word looks at.
bool is_word_char(char32_t c) {
  if (c == '_') return true;
  const auto category = utf8proc_category(static_cast<utf8proc_int32_t>(c));
  return (category >= UTF8PROC_CATEGORY_LU && category <= UTF8PROC_CATEGORY_LO) ||
         (category >= UTF8PROC_CATEGORY_ND && category <= UTF8PROC_CATEGORY_NO);
}
// Rust's char::is_whitespace (Unicode White_Space).
bool is_space(char32_t c) {
  if ((c >= 0x09 && c <= 0x0D) || c == 0x20 || c == 0x85) return true;
  const auto category = utf8proc_category(static_cast<utf8proc_int32_t>(c));
  return category == UTF8PROC_CATEGORY_ZS || category == UTF8PROC_CATEGORY_ZL || category == UTF8PROC_CATEGORY_ZP;
}
char32_t code_point_at(std::string_view text, size_t pos) { return next_code_point(text, pos); }
}  // namespace

bool AddedTokenMatcher::word_bounded(std::string_view text, size_t begin, size_t end) const {
  if (begin > 0 && is_word_char(code_point_before(text, begin))) return false;
  return end >= text.size() || !is_word_char(code_point_at(text, end));
}

std::vector<Segment> AddedTokenMatcher::split(std::string_view text, bool match_special) const {
  std::vector<Segment> out;
  size_t done = 0;  // text before this is already in out
  for (size_t pos = 0; pos < text.size();) {
    if (!first_byte_[static_cast<unsigned char>(text[pos])]) {
      ++pos;
      continue;
    }
    const int32_t t = longest_at(text, pos, match_special);
    if (t < 0) {
      ++pos;
      continue;
    }
    const AddedToken& token = tokens_[static_cast<size_t>(t)];
    size_t begin = pos, end = pos + token.content.size();
    if (token.single_word && !word_bounded(text, begin, end)) {
      ++pos;
      continue;
    }
    if (token.lstrip) {
      while (begin > done && is_space(code_point_before(text, begin))) begin = previous_code_point_start(text, begin);
    }
    while (token.rstrip && end < text.size()) {
      size_t next = end;
      if (!is_space(next_code_point(text, next))) break;
      end = next;
    }
    if (begin > done) out.push_back({text.substr(done, begin - done), -1, done});
    out.push_back({text.substr(begin, end - begin), token.id, begin});
    done = pos = end;
  }
  if (done < text.size()) out.push_back({text.substr(done), -1, done});
  return out;
}

}  // namespace nanoserve
