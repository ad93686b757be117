#include "grammar/token_trie.h"

#include <algorithm>

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
}

std::shared_ptr<const TokenTrie> TokenTrie::of(const Tokenizer& tokenizer) {
  std::vector<std::pair<int32_t, std::string>> tokens;
  for (int32_t id = 0; id < tokenizer.vocab_size(); ++id) {
    if (!tokenizer.is_special(id)) tokens.emplace_back(id, tokenizer.token_bytes(id, false));
  }
  return std::make_shared<const TokenTrie>(tokenizer.vocab_size(), std::move(tokens));
}

}  // namespace nanoserve::grammar
