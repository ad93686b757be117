#define PCRE2_CODE_UNIT_WIDTH 8
#include "tokenizer/regex.h"

#include <pcre2.h>

#include "util/error.h"

namespace nanoserve {

namespace {
std::string pcre2_message(int code) {
  PCRE2_UCHAR buffer[256];
  pcre2_get_error_message(code, buffer, sizeof buffer);
  return reinterpret_cast<const char*>(buffer);
}
}  // namespace

Regex::Regex(const std::string& pattern, bool literal) {
  int error = 0;
  PCRE2_SIZE offset = 0;
  const uint32_t options = PCRE2_UTF | (literal ? PCRE2_LITERAL : PCRE2_UCP);  // UCP cannot go with LITERAL
  code_ =
      pcre2_compile(reinterpret_cast<PCRE2_SPTR>(pattern.data()), pattern.size(), options, &error, &offset, nullptr);
  if (!code_) fail("invalid regex /{}/ at offset {}: {}", pattern, offset, pcre2_message(error));
  pcre2_jit_compile(code_, PCRE2_JIT_COMPLETE);  // falls back to the interpreter if JIT is unavailable
}

Regex::~Regex() { pcre2_code_free(code_); }

std::unique_ptr<Regex> Regex::from_pattern(const nlohmann::json& pattern) {
  if (pattern.contains("String")) return std::make_unique<Regex>(pattern["String"].get<std::string>(), true);
  if (pattern.contains("Regex")) return std::make_unique<Regex>(pattern["Regex"].get<std::string>(), false);
  fail("pattern {} is neither {{\"String\": ...}} nor {{\"Regex\": ...}}",
       pattern.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace));
}

Replacement::Replacement(const nlohmann::json& j)
    : pattern_(Regex::from_pattern(j.at("pattern"))), content_(j.at("content").get<std::string>()) {}

std::string Regex::replace_all(std::string_view text, std::string_view replacement, size_t max_bytes) const {
  std::string out;
  size_t last = 0;
  for (auto [begin, end] : find_all(text)) {
    out.append(text.substr(last, begin - last));
    out.append(replacement);
    last = end;
    if (out.size() > max_bytes) fail("replacing every match makes the text longer than {} bytes", max_bytes);
  }
  if (out.size() + (text.size() - last) > max_bytes)
    fail("replacing every match makes the text longer than {} bytes", max_bytes);
  out.append(text.substr(last));
  return out;
}

std::vector<std::pair<size_t, size_t>> Regex::find_all(std::string_view text) const {
  std::unique_ptr<pcre2_match_data, decltype(&pcre2_match_data_free)> match(
      pcre2_match_data_create_from_pattern(code_, nullptr), &pcre2_match_data_free);
  std::vector<std::pair<size_t, size_t>> found;
  const auto* subject = reinterpret_cast<PCRE2_SPTR>(text.data());
  uint32_t options = 0;  // the first call checks that the whole subject is valid UTF-8
  for (size_t offset = 0; offset <= text.size();) {
    int rc = pcre2_match(code_, subject, text.size(), offset, options, match.get(), nullptr);
    if (rc == PCRE2_ERROR_NOMATCH) break;
    if (rc < 0) {
      if (rc <= PCRE2_ERROR_UTF8_ERR1 && rc >= PCRE2_ERROR_UTF8_ERR21) {
        fail("text is not valid UTF-8 (at byte {})", pcre2_get_startchar(match.get()));
      }
      fail("regex match failed: {}", pcre2_message(rc));
    }
    options = PCRE2_NO_UTF_CHECK;
    const PCRE2_SIZE* ovector = pcre2_get_ovector_pointer(match.get());
    size_t begin = ovector[0], end = ovector[1];
    if (end == begin) {  // an empty match: step over one character
      if (end >= text.size()) break;
      offset = end + 1;
      while (offset < text.size() && (static_cast<unsigned char>(text[offset]) & 0xC0) == 0x80) ++offset;
      continue;
    }
    found.emplace_back(begin, end);
    offset = end;
  }
  return found;
}

}  // namespace nanoserve
