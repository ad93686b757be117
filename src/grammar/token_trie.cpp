#include "grammar/token_trie.h"

#include <algorithm>
#include <array>
#include <map>

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

const std::vector<std::vector<ByteRange>>& plain_characters() {
  static const std::vector<std::vector<ByteRange>> characters = [] {
    std::vector<std::vector<ByteRange>> out;
    for (int b = 0x20; b <= 0x7F; ++b) {
      if (b != '"' && b != '\\') out.push_back({{static_cast<uint8_t>(b), static_cast<uint8_t>(b)}});
    }
    out.insert(out.end(), {
                              {{0xC2, 0xDF}, {0x80, 0xBF}},
                              {{0xE0, 0xE0}, {0xA0, 0xBF}, {0x80, 0xBF}},
                              {{0xE1, 0xEC}, {0x80, 0xBF}, {0x80, 0xBF}},
                              {{0xED, 0xED}, {0x80, 0x9F}, {0x80, 0xBF}},
                              {{0xEE, 0xEF}, {0x80, 0xBF}, {0x80, 0xBF}},
                              {{0xF0, 0xF0}, {0x90, 0xBF}, {0x80, 0xBF}, {0x80, 0xBF}},
                              {{0xF1, 0xF3}, {0x80, 0xBF}, {0x80, 0xBF}, {0x80, 0xBF}},
                              {{0xF4, 0xF4}, {0x80, 0x8F}, {0x80, 0xBF}, {0x80, 0xBF}},
                          });
    return out;
  }();
  return characters;
}

namespace {

constexpr int16_t kRefused = -1;

// plain_characters() as a byte machine: place 0 is between characters, each other place is inside
// one, named by the byte ranges still to come (so characters that end alike share places).
// next[place][byte] is the place after the byte, or kRefused.
std::vector<std::array<int16_t, 256>> plain_places() {
  std::vector<std::array<int16_t, 256>> next(1);
  next[0].fill(kRefused);
  std::map<std::vector<std::pair<uint8_t, uint8_t>>, int16_t> places;  // ranges still to come -> place
  for (const auto& character : plain_characters()) {
    int16_t at = 0;
    for (size_t i = 0; i < character.size(); ++i) {
      std::vector<std::pair<uint8_t, uint8_t>> rest;
      for (size_t j = i + 1; j < character.size(); ++j) rest.emplace_back(character[j].first, character[j].last);
      int16_t to = 0;
      if (!rest.empty()) {
        auto [it, added] = places.try_emplace(rest, static_cast<int16_t>(next.size()));
        if (added) next.emplace_back().fill(kRefused);
        to = it->second;
      }
      for (int b = character[i].first; b <= character[i].last; ++b) next[static_cast<size_t>(at)][static_cast<size_t>(b)] = to;
      at = to;
    }
  }
  return next;
}

}  // namespace

// Children before parents (nodes are in preorder, so backwards): a node's count in each place of
// plain_places() is the largest of its children's, plus one where a child's byte starts a character.
void TokenTrie::count_plain_chars() {
  const auto next = plain_places();
  const size_t places = next.size();
  std::vector<int16_t> chars(nodes_.size() * places);  // [node, place]
  for (size_t n = nodes_.size(); n-- > 0;) {
    for (size_t at = 0; at < places; ++at) {
      int best = 0;
      for (size_t c = n + 1; c < static_cast<size_t>(nodes_[n].end) && best >= 0;
           c = static_cast<size_t>(nodes_[c].end)) {
        const int16_t to = next[at][nodes_[c].byte];
        const int below = to == kRefused ? kRefused : chars[c * places + static_cast<size_t>(to)];
        best = below == kRefused ? kRefused : std::max(best, below + (at == 0 ? 1 : 0));
      }
      chars[n * places + at] = static_cast<int16_t>(std::min(best, 32767));
    }
  }
  plain_chars_.resize(nodes_.size());
  for (size_t n = 0; n < nodes_.size(); ++n) plain_chars_[n] = chars[n * places];
}

std::shared_ptr<const TokenTrie> TokenTrie::of(const Tokenizer& tokenizer) {
  std::vector<std::pair<int32_t, std::string>> tokens;
  for (int32_t id = 0; id < tokenizer.vocab_size(); ++id) {
    if (!tokenizer.is_special(id)) tokens.emplace_back(id, tokenizer.token_bytes(id, false));
  }
  return std::make_shared<const TokenTrie>(tokenizer.vocab_size(), std::move(tokens));
}

}  // namespace nanoserve::grammar
