// tokenizer.json's added tokens (special tokens like <|eot_id|>, and user-added words): found in the
// text before anything else, leftmost first and longest at the same place, and never split.
#pragma once

#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>
#include <vector>

namespace nanoserve {

struct AddedToken {
  int32_t id = -1;
  std::string content;
  bool special = false;      // dropped by decode(skip_special=true); optionally not matched in text
  bool lstrip = false;       // the match takes the whitespace on its left
  bool rstrip = false;       // ... and on its right
  bool single_word = false;  // only matched where it is not part of a longer word
  bool normalized = false;   // matched in the normalized text rather than the raw input

  static AddedToken from_json(const nlohmann::json& j);
};

// A piece of text: ordinary text (token < 0) or the match of an added token.
struct Segment {
  std::string_view text;
  int32_t token = -1;
  size_t offset = 0;  // where text begins in the searched string
};

// Finds one group of added tokens (those matched on raw text, or on normalized text) with a trie.
class AddedTokenMatcher {
 public:
  void add(const AddedToken& token);
  bool empty() const { return tokens_.empty(); }

  // text cut into ordinary segments and added-token matches. With match_special false, special
  // tokens are left in the text (what a user typed is not a control token).
  std::vector<Segment> split(std::string_view text, bool match_special) const;

 private:
  struct Node {
    std::vector<std::pair<unsigned char, int32_t>> children;  // sorted by byte
    int32_t token = -1;                                       // index into tokens_ ending here
  };
  int32_t child(int32_t node, unsigned char byte) const;
  // Longest token starting at pos (index into tokens_), or -1.
  int32_t longest_at(std::string_view text, size_t pos, bool match_special) const;
  bool word_bounded(std::string_view text, size_t begin, size_t end) const;

  std::vector<AddedToken> tokens_;
  std::vector<Node> nodes_{Node{}};
  bool first_byte_[256] = {};
};

}  // namespace nanoserve
