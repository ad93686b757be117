// A compiled PCRE2 pattern with Unicode properties (\p{L}, \p{N}) as tokenizer.json uses them.
#pragma once

#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

struct pcre2_real_code_8;

namespace nanoserve {

class Regex {
 public:
  // literal: match the pattern text as is (tokenizer.json's {"String": ...} patterns).
  Regex(const std::string& pattern, bool literal);
  // tokenizer.json's pattern object: {"String": text} (literal) or {"Regex": pattern}.
  static std::unique_ptr<Regex> from_pattern(const nlohmann::json& pattern);
  ~Regex();
  Regex(const Regex&) = delete;
  Regex& operator=(const Regex&) = delete;

  // [begin, end) byte ranges of successive non-overlapping matches. Throws Error if text is not UTF-8.
  std::vector<std::pair<size_t, size_t>> find_all(std::string_view text) const;
  // Throws Error when the result would pass max_bytes, before building more than that.
  std::string replace_all(std::string_view text, std::string_view replacement, size_t max_bytes = SIZE_MAX) const;

 private:
  pcre2_real_code_8* code_ = nullptr;
};

// tokenizer.json's Replace step, the same as a normalizer and as a decoder: every match of
// "pattern" becomes "content".
class Replacement {
 public:
  explicit Replacement(const nlohmann::json& j);
  std::string apply(std::string_view text, size_t max_bytes = SIZE_MAX) const {
    return pattern_->replace_all(text, content_, max_bytes);
  }

 private:
  std::unique_ptr<Regex> pattern_;
  std::string content_;
};

}  // namespace nanoserve
