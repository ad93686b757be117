#include "tokenizer/normalizer.h"

#include <utf8proc.h>

#include <cstdlib>

#include "tokenizer/regex.h"
#include "util/error.h"

namespace nanoserve {

using json = nlohmann::json;

namespace {

// NFC, NFD, NFKC, NFKD through utf8proc; invalid UTF-8 is an error naming the byte.
class Unicode : public Normalizer {
 public:
  explicit Unicode(utf8proc_option_t options) : options_(options) {}
  std::string normalize_within(std::string text, size_t) const override {
    utf8proc_uint8_t* out = nullptr;
    const utf8proc_ssize_t n = utf8proc_map(reinterpret_cast<const utf8proc_uint8_t*>(text.data()),
                                            static_cast<utf8proc_ssize_t>(text.size()), &out, options_);
    if (n < 0) fail("cannot normalize text: {}", utf8proc_errmsg(n));
    std::string result(reinterpret_cast<const char*>(out), static_cast<size_t>(n));
    std::free(out);
    return result;
  }

 private:
  utf8proc_option_t options_;
};

// Unicode lowercase, one code point at a time, as Rust's str::to_lowercase does for all but the
// final-sigma rule.
class Lowercase : public Normalizer {
 public:
  std::string normalize_within(std::string text, size_t) const override {
    std::string out;
    out.reserve(text.size());
    for (size_t pos = 0; pos < text.size();) {
      utf8proc_int32_t cp = 0;
      const auto n = utf8proc_iterate(reinterpret_cast<const utf8proc_uint8_t*>(text.data() + pos),
                                      static_cast<utf8proc_ssize_t>(text.size() - pos), &cp);
      if (n < 0) fail("cannot lowercase text: invalid UTF-8 at byte {}", pos);
      utf8proc_uint8_t buffer[4];
      const auto written = utf8proc_encode_char(utf8proc_tolower(cp), buffer);
      out.append(reinterpret_cast<const char*>(buffer), static_cast<size_t>(written));
      pos += static_cast<size_t>(n);
    }
    return out;
  }
};

class Prepend : public Normalizer {
 public:
  explicit Prepend(const json& j) : prefix_(j.at("prepend").get<std::string>()) {}
  std::string normalize_within(std::string text, size_t max_bytes) const override {
    if (text.size() + prefix_.size() > max_bytes) fail("prepending makes the text longer than {} bytes", max_bytes);
    return text.empty() ? text : prefix_ + text;
  }

 private:
  std::string prefix_;
};

class Replace : public Normalizer {
 public:
  explicit Replace(const json& j) : replacement_(j) {}
  std::string normalize_within(std::string text, size_t max_bytes) const override {
    return replacement_.apply(text, max_bytes);
  }

 private:
  Replacement replacement_;
};

// Strips whitespace from either end.
class Strip : public Normalizer {
 public:
  explicit Strip(const json& j) : left_(j.value("strip_left", true)), right_(j.value("strip_right", true)) {}
  std::string normalize_within(std::string text, size_t) const override {
    constexpr const char* kSpace = " \t\n\r\f\v";
    if (right_) text.erase(text.find_last_not_of(kSpace) + 1);
    if (left_) text.erase(0, std::min(text.size(), text.find_first_not_of(kSpace)));
    return text;
  }

 private:
  bool left_, right_;
};

class Sequence : public Normalizer {
 public:
  explicit Sequence(const json& j) {
    for (const auto& child : j.at("normalizers")) {
      if (auto step = make_normalizer(child)) steps_.push_back(std::move(step));
    }
  }
  std::string normalize_within(std::string text, size_t max_bytes) const override {
    for (const auto& step : steps_) {
      text = step->normalize_within(std::move(text), max_bytes);
      if (text.size() > max_bytes) fail("the text grows past {} bytes", max_bytes);  // Unicode forms, lowercase
    }
    return text;
  }

 private:
  std::vector<std::unique_ptr<Normalizer>> steps_;
};

template <typename... Flags>
utf8proc_option_t options(Flags... flags) {
  return static_cast<utf8proc_option_t>((0 | ... | static_cast<int>(flags)));
}

}  // namespace

std::string Normalizer::normalize(std::string text) const {
  const size_t input = text.size(), max_bytes = kMaxGrowth * input + kGrowthSlack;
  std::string out = with_context("tokenizer normalizer", [&] { return normalize_within(std::move(text), max_bytes); });
  if (out.size() > max_bytes) fail("tokenizer normalizer: the text grows past {} bytes", max_bytes);
  return out;
}

std::unique_ptr<Normalizer> make_normalizer(const json& j) {
  if (j.is_null()) return nullptr;
  const std::string type = j.at("type").get<std::string>();
  if (type == "Sequence") return std::make_unique<Sequence>(j);
  if (type == "NFC") return std::make_unique<Unicode>(options(UTF8PROC_STABLE, UTF8PROC_COMPOSE));
  if (type == "NFD") return std::make_unique<Unicode>(options(UTF8PROC_STABLE, UTF8PROC_DECOMPOSE));
  if (type == "NFKC") return std::make_unique<Unicode>(options(UTF8PROC_STABLE, UTF8PROC_COMPOSE, UTF8PROC_COMPAT));
  if (type == "NFKD") return std::make_unique<Unicode>(options(UTF8PROC_STABLE, UTF8PROC_DECOMPOSE, UTF8PROC_COMPAT));
  if (type == "Lowercase") return std::make_unique<Lowercase>();
  if (type == "Prepend") return std::make_unique<Prepend>(j);
  if (type == "Replace") return std::make_unique<Replace>(j);
  if (type == "Strip") return std::make_unique<Strip>(j);
  fail(
      "normalizer type '{}' is not supported (supported: Sequence, NFC, NFD, NFKC, NFKD, Lowercase, Prepend, "
      "Replace, Strip)",
      type);
}

}  // namespace nanoserve
