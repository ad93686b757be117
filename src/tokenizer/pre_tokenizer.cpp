#include "tokenizer/pre_tokenizer.h"

#include "tokenizer/byte_level.h"
#include "tokenizer/regex.h"
#include "util/error.h"

namespace nanoserve {

using json = nlohmann::json;

namespace {

// GPT-2's pre-tokenizer pattern, used by ByteLevel when use_regex is true.
constexpr const char* kGpt2Pattern =
    R"('s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+)";

enum class SplitBehavior { Isolated, Removed };

// Pieces of `text`: the matches and, unless removed, the text between them.
void split_by(const Regex& regex, SplitBehavior behavior, const std::string& text, std::vector<std::string>& out) {
  size_t last = 0;
  for (auto [begin, end] : regex.find_all(text)) {
    if (begin > last) out.push_back(text.substr(last, begin - last));
    if (behavior == SplitBehavior::Isolated) out.push_back(text.substr(begin, end - begin));
    last = end;
  }
  if (last < text.size()) out.push_back(text.substr(last));
}

void split_each(std::vector<std::string>& pieces, const Regex& regex, SplitBehavior behavior) {
  std::vector<std::string> out;
  for (const auto& piece : pieces) split_by(regex, behavior, piece, out);
  pieces = std::move(out);
}

class Split : public PreTokenizer {
 public:
  explicit Split(const json& j) {
    const json& pattern = j.at("pattern");
    const bool literal = pattern.contains("String");
    regex_ = std::make_unique<Regex>(pattern.at(literal ? "String" : "Regex").get<std::string>(), literal);
    const std::string behavior = j.value("behavior", "Isolated");
    if (behavior == "Isolated") {
      behavior_ = SplitBehavior::Isolated;
    } else if (behavior == "Removed") {
      behavior_ = SplitBehavior::Removed;
    } else {
      fail("Split pre-tokenizer: behavior '{}' is not supported (supported: Isolated, Removed)", behavior);
    }
    if (j.value("invert", false)) fail("Split pre-tokenizer: invert=true is not supported");
  }
  void split(std::vector<std::string>& pieces) const override { split_each(pieces, *regex_, behavior_); }

 private:
  std::unique_ptr<Regex> regex_;
  SplitBehavior behavior_;
};

// Optionally splits with GPT-2's pattern and adds a leading space, then maps bytes to the
// byte-level alphabet.
class ByteLevel : public PreTokenizer {
 public:
  explicit ByteLevel(const json& j) : add_prefix_space_(j.value("add_prefix_space", false)) {
    if (j.value("use_regex", true)) regex_ = std::make_unique<Regex>(kGpt2Pattern, false);
  }
  void split(std::vector<std::string>& pieces) const override {
    if (add_prefix_space_) {
      for (auto& p : pieces) {
        if (p.empty() || p[0] != ' ') p = " " + p;
      }
    }
    if (regex_) split_each(pieces, *regex_, SplitBehavior::Isolated);
    for (auto& p : pieces) p = bytes_to_byte_level(p);
  }

 private:
  bool add_prefix_space_;
  std::unique_ptr<Regex> regex_;
};

class Sequence : public PreTokenizer {
 public:
  explicit Sequence(const json& j) {
    for (const auto& child : j.at("pretokenizers")) steps_.push_back(make_pre_tokenizer(child));
  }
  void split(std::vector<std::string>& pieces) const override {
    for (const auto& step : steps_) {
      if (step) step->split(pieces);
    }
  }

 private:
  std::vector<std::unique_ptr<PreTokenizer>> steps_;
};

}  // namespace

std::unique_ptr<PreTokenizer> make_pre_tokenizer(const json& j) {
  if (j.is_null()) return nullptr;
  const std::string type = j.at("type").get<std::string>();
  if (type == "Split") return std::make_unique<Split>(j);
  if (type == "ByteLevel") return std::make_unique<ByteLevel>(j);
  if (type == "Sequence") return std::make_unique<Sequence>(j);
  fail("pre-tokenizer type '{}' is not supported (supported: Split, ByteLevel, Sequence)", type);
}

}  // namespace nanoserve
