#include "grammar/token_trie.h"

#include <algorithm>
#include <array>

#include "tokenizer/tokenizer.h"

namespace nanoserve::grammar {

TokenTrie::TokenTrie(int32_t vocab_size, std::vector<std::pair<int32_t, std::string>> tokens)
    : vocab_size_(vocab_size), bytes_(static_cast<size_t>(vocab_size)) {
  std::erase_if(tokens, [&](const auto& t) { return t.second.empty() || t.first < 0 || t.first >= vocab_size; });
  std::sort(tokens.begin(), tokens.end(), [](const auto& a, const auto& b) { return a.second < b.second; });
  nodes_.push_back({0, 0, 0, 0, {}, 0});
  std::vector<int32_t> path{0};  // path[d]: the node at depth d on the current branch
  std::string_view previous;
  auto close_deepest = [&] {
    Node& node = nodes_[static_cast<size_t>(path.back())];
    node.end = static_cast<int32_t>(nodes_.size());
    node.rank_end = static_cast<int32_t>(token_of_rank_.size());
    path.pop_back();
    Node& parent = nodes_[static_cast<size_t>(path.back())];
    parent.below.add(node.byte);
    for (size_t i = 0; i < 4; ++i) parent.below.bits[i] |= node.below.bits[i];
  };
  for (auto& [id, text] : tokens) {
    size_t common = 0;
    while (common < previous.size() && common < text.size() && previous[common] == text[common]) ++common;
    while (path.size() > common + 1) close_deepest();
    for (size_t d = common; d < text.size(); ++d) {
      const auto rank = static_cast<int32_t>(token_of_rank_.size());
      path.push_back(static_cast<int32_t>(nodes_.size()));
      nodes_.push_back({0, rank, rank, rank, {}, static_cast<uint8_t>(text[d])});
    }
    token_of_rank_.push_back(id);
    nodes_[static_cast<size_t>(path.back())].own_end = static_cast<int32_t>(token_of_rank_.size());
    bytes_[static_cast<size_t>(id)] = std::move(text);
    previous = bytes_[static_cast<size_t>(id)];
  }
  while (path.size() > 1) close_deepest();
  nodes_[0].end = static_cast<int32_t>(nodes_.size());
  nodes_[0].rank_end = static_cast<int32_t>(token_of_rank_.size());
  members_.assign(static_cast<size_t>(vocab_size_ + 63) / 64, 0);
  for (int32_t id : token_of_rank_) members_[static_cast<size_t>(id) >> 6] |= uint64_t{1} << (id & 63);
  count_plain_chars();
}

namespace {

// Where well-formed UTF-8 is, between characters (0) or inside one (what the next byte must be).
enum Utf8 : uint8_t { kBoundary, kOneMore, kTwoMore, kThreeMore, kAfterE0, kAfterED, kAfterF0, kAfterF4, kStates };
constexpr int kRefused = -1;

int utf8_next(int at, uint8_t b) {
  const bool cont = b >= 0x80 && b <= 0xBF;
  switch (at) {
    case kBoundary:
      if (b >= 0x20 && b <= 0x7F) return b == '"' || b == '\\' ? kRefused : kBoundary;
      if (b >= 0xC2 && b <= 0xDF) return kOneMore;
      if (b == 0xE0) return kAfterE0;
      if (b == 0xED) return kAfterED;
      if (b >= 0xE1 && b <= 0xEF) return kTwoMore;
      if (b == 0xF0) return kAfterF0;
      if (b >= 0xF1 && b <= 0xF3) return kThreeMore;
      if (b == 0xF4) return kAfterF4;
      return kRefused;
    case kOneMore: return cont ? kBoundary : kRefused;
    case kTwoMore: return cont ? kOneMore : kRefused;
    case kThreeMore: return cont ? kTwoMore : kRefused;
    case kAfterE0: return b >= 0xA0 && b <= 0xBF ? kOneMore : kRefused;
    case kAfterED: return b >= 0x80 && b <= 0x9F ? kOneMore : kRefused;
    case kAfterF0: return b >= 0x90 && b <= 0xBF ? kTwoMore : kRefused;
    default: return b >= 0x80 && b <= 0x8F ? kTwoMore : kRefused;  // kAfterF4
  }
}

}  // namespace

// Children before parents (nodes are in preorder, so backwards): a node's count in each UTF-8
// place is the largest of its children's, plus one where a child's byte starts a character.
void TokenTrie::count_plain_chars() {
  std::vector<std::array<int16_t, kStates>> chars(nodes_.size());
  for (size_t n = nodes_.size(); n-- > 0;) {
    for (int at = 0; at < kStates; ++at) {
      int best = 0;
      for (size_t c = n + 1; c < static_cast<size_t>(nodes_[n].end) && best >= 0;
           c = static_cast<size_t>(nodes_[c].end)) {
        const int to = utf8_next(at, nodes_[c].byte);
        const int below = to == kRefused ? kRefused : chars[c][static_cast<size_t>(to)];
        best = below == kRefused ? kRefused : std::max(best, below + (at == kBoundary ? 1 : 0));
      }
      chars[n][static_cast<size_t>(at)] = static_cast<int16_t>(std::min(best, 32767));
    }
  }
  plain_chars_.resize(nodes_.size());
  for (size_t n = 0; n < nodes_.size(); ++n) plain_chars_[n] = chars[n][kBoundary];
}

std::shared_ptr<const TokenTrie> TokenTrie::of(const Tokenizer& tokenizer) {
  std::vector<std::pair<int32_t, std::string>> tokens;
  for (int32_t id = 0; id < tokenizer.vocab_size(); ++id) {
    if (!tokenizer.is_special(id)) tokens.emplace_back(id, tokenizer.token_bytes(id, false));
  }
  return std::make_shared<const TokenTrie>(tokenizer.vocab_size(), std::move(tokens));
}

}  // namespace nanoserve::grammar
