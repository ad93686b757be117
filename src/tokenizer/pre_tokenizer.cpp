#include "tokenizer/pre_tokenizer.h"

#include "tokenizer/byte_level.h"
#include "tokenizer/regex.h"
#include "util/error.h"

namespace nanoserve {

using json = nlohmann::json;

namespace {

// GPT-2's pre-tokenizer pattern, used by ByteLevel when use_regex is true.
constexpr const char* kGpt2Pattern = R"('s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+)";
constexpr const char* kMetaspace = "\xE2\x96\x81";  // ▁ U+2581

// What happens to the delimiters a pattern matches (tokenizer.json's SplitDelimiterBehavior).
enum class Behavior { Isolated, Removed, MergedWithPrevious, MergedWithNext, Contiguous };

Behavior parse_behavior(const std::string& name) {
  if (name == "Isolated") return Behavior::Isolated;
  if (name == "Removed") return Behavior::Removed;
  if (name == "MergedWithPrevious") return Behavior::MergedWithPrevious;
  if (name == "MergedWithNext") return Behavior::MergedWithNext;
  if (name == "Contiguous") return Behavior::Contiguous;
  fail("split behavior '{}' is not one of Isolated, Removed, MergedWithPrevious, MergedWithNext, Contiguous", name);
}

struct Span {
  size_t begin, end;
  bool is_match;
};

// The text cut into alternating matches and gaps, in order, with no empty spans.
std::vector<Span> partition(const Regex& regex, const std::string& text, bool invert) {
  std::vector<Span> spans;
  size_t last = 0;
  for (auto [begin, end] : regex.find_all(text)) {
    if (begin > last) spans.push_back({last, begin, invert});
    spans.push_back({begin, end, !invert});
    last = end;
  }
  if (last < text.size()) spans.push_back({last, text.size(), invert});
  return spans;
}

// Applies the behavior to the spans: which become pieces, and which join their neighbour.
std::vector<Span> arrange(std::vector<Span> spans, Behavior behavior) {
  std::vector<Span> out;
  bool previous_match = false;
  switch (behavior) {
    case Behavior::Isolated: return spans;
    case Behavior::Removed:
      for (const auto& s : spans) {
        if (!s.is_match) out.push_back(s);
      }
      return out;
    case Behavior::MergedWithPrevious:
      for (const auto& s : spans) {
        if (s.is_match && !previous_match && !out.empty()) {
          out.back().end = s.end;
        } else {
          out.push_back(s);
        }
        previous_match = s.is_match;
      }
      return out;
    case Behavior::MergedWithNext:
      for (auto it = spans.rbegin(); it != spans.rend(); ++it) {
        if (it->is_match && !previous_match && !out.empty()) {
          out.back().begin = it->begin;
        } else {
          out.push_back(*it);
        }
        previous_match = it->is_match;
      }
      return {out.rbegin(), out.rend()};
    case Behavior::Contiguous:
      for (const auto& s : spans) {
        if (!out.empty() && s.is_match && previous_match) {
          out.back().end = s.end;
        } else {
          out.push_back(s);
        }
        previous_match = s.is_match;
      }
      return out;
  }
  return spans;
}

void split_each(std::vector<std::string>& pieces, const Regex& regex, Behavior behavior, bool invert = false) {
  std::vector<std::string> out;
  for (const auto& piece : pieces) {
    for (const auto& s : arrange(partition(regex, piece, invert), behavior))
      out.push_back(piece.substr(s.begin, s.end - s.begin));
  }
  pieces = std::move(out);
}

// A pre-tokenizer that is one regex split.
class RegexSplit : public PreTokenizer {
 public:
  RegexSplit(std::unique_ptr<Regex> regex, Behavior behavior, bool invert)
      : regex_(std::move(regex)), behavior_(behavior), invert_(invert) {}
  void split(std::vector<std::string>& pieces, bool) const override { split_each(pieces, *regex_, behavior_, invert_); }

 private:
  std::unique_ptr<Regex> regex_;
  Behavior behavior_;
  bool invert_;
};

std::unique_ptr<PreTokenizer> make_split(const json& j) {
  return std::make_unique<RegexSplit>(Regex::from_pattern(j.at("pattern")),
                                      parse_behavior(j.value("behavior", "Isolated")), j.value("invert", false));
}

std::unique_ptr<PreTokenizer> regex_split(const char* pattern, Behavior behavior, bool invert = false) {
  return std::make_unique<RegexSplit>(std::make_unique<Regex>(pattern, false), behavior, invert);
}

// Optionally adds a leading space and splits with GPT-2's pattern, then maps bytes to the
// byte-level alphabet.
class ByteLevel : public PreTokenizer {
 public:
  explicit ByteLevel(const json& j) : add_prefix_space_(j.value("add_prefix_space", false)) {
    if (j.value("use_regex", true)) regex_ = std::make_unique<Regex>(kGpt2Pattern, false);
  }
  void split(std::vector<std::string>& pieces, bool) const override {
    if (add_prefix_space_) {
      for (auto& p : pieces) {
        if (p.empty() || p[0] != ' ') p = " " + p;
      }
    }
    if (regex_) split_each(pieces, *regex_, Behavior::Isolated);
    for (auto& p : pieces) p = bytes_to_byte_level(p);
  }

 private:
  bool add_prefix_space_;
  std::unique_ptr<Regex> regex_;
};

// SentencePiece's word boundaries: spaces become the replacement (▁), which is prepended to the
// text ("always", or "first" for the start of the input only) and begins each piece.
class Metaspace : public PreTokenizer {
 public:
  explicit Metaspace(const json& j)
      : replacement_(j.value("replacement", std::string(kMetaspace))), split_(j.value("split", true)) {
    const std::string scheme = j.contains("prepend_scheme")        ? j["prepend_scheme"].get<std::string>()
                               : j.value("add_prefix_space", true) ? "always"
                                                                   : "never";
    if (scheme != "always" && scheme != "first" && scheme != "never") {
      fail("Metaspace prepend_scheme '{}' is not one of always, first, never", scheme);
    }
    prepend_always_ = scheme == "always";
    prepend_first_ = scheme == "first";
    spaces_ = std::make_unique<Regex>(" ", true);
    boundary_ = std::make_unique<Regex>(replacement_, true);
  }
  void split(std::vector<std::string>& pieces, bool at_text_start) const override {
    for (size_t i = 0; i < pieces.size(); ++i) {
      std::string& p = pieces[i];
      p = spaces_->replace_all(p, replacement_);
      const bool prepend = prepend_always_ || (prepend_first_ && at_text_start && i == 0);
      if (prepend && p.compare(0, replacement_.size(), replacement_) != 0) p = replacement_ + p;
    }
    if (split_) split_each(pieces, *boundary_, Behavior::MergedWithNext);
  }

 private:
  std::string replacement_;
  bool split_, prepend_always_ = false, prepend_first_ = false;
  std::unique_ptr<Regex> spaces_, boundary_;
};

class Sequence : public PreTokenizer {
 public:
  explicit Sequence(const json& j) {
    for (const auto& child : j.at("pretokenizers")) {
      if (auto step = make_pre_tokenizer(child)) steps_.push_back(std::move(step));
    }
  }
  void split(std::vector<std::string>& pieces, bool at_text_start) const override {
    for (const auto& step : steps_) step->split(pieces, at_text_start);
  }

 private:
  std::vector<std::unique_ptr<PreTokenizer>> steps_;
};

}  // namespace

std::unique_ptr<PreTokenizer> make_pre_tokenizer(const json& j) {
  if (j.is_null()) return nullptr;
  const std::string type = j.at("type").get<std::string>();
  if (type == "Split") return make_split(j);
  if (type == "ByteLevel") return std::make_unique<ByteLevel>(j);
  if (type == "Metaspace") return std::make_unique<Metaspace>(j);
  if (type == "Sequence") return std::make_unique<Sequence>(j);
  if (type == "Digits")
    return regex_split(j.value("individual_digits", false) ? R"(\p{N})" : R"(\p{N}+)", Behavior::Isolated);
  // Rust's char::is_whitespace and \w differ from PCRE2's only outside what real vocabularies use.
  if (type == "Whitespace") return regex_split(R"(\w+|[^\w\s]+)", Behavior::Removed, /*invert=*/true);
  if (type == "WhitespaceSplit") return regex_split(R"(\s+)", Behavior::Removed);
  if (type == "Punctuation") {
    return regex_split(R"([\p{P}!-/:-@\[-`{-~])", parse_behavior(j.value("behavior", "Isolated")));
  }
  fail(
      "pre-tokenizer type '{}' is not supported (supported: Split, ByteLevel, Metaspace, Digits, Whitespace, "
      "WhitespaceSplit, Punctuation, Sequence)",
      type);
}

}  // namespace nanoserve
