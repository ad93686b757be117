// A tokenizer's vocabulary as a byte trie, built once per tokenizer and shared by every grammar:
// the matcher walks it to find the allowed tokens, pruning a subtree as soon as its prefix is
// refused, so a step never looks at every token. Nodes are in preorder, so a subtree is a range of
// nodes and the tokens below a node are a range of ranks (tokens sorted by their bytes).
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "grammar/grammar.h"
#include "grammar/walk_cache.h"

namespace nanoserve {
class Tokenizer;
}

namespace nanoserve::grammar {

// Plain string text, a character at a time: each entry is one character's byte ranges, its first
// byte's then each following byte's. ASCII from ' ' to DEL but '"' and '\\', then well-formed UTF-8
// of two to four bytes. The trie counts characters of it (TokenTrie::plain_chars) and the automaton
// checks that a state reads every one of them: one definition, so the two cannot disagree.
struct ByteRange {
  uint8_t first, last;
};
const std::vector<std::vector<ByteRange>>& plain_characters();

class TokenTrie {
 public:
  struct Node {
    int32_t end;         // one past the last node of this subtree
    int32_t rank_begin;  // the tokens ending here, then those below: ranks [rank_begin, rank_end)
    int32_t own_end;     // ranks [rank_begin, own_end) end exactly here
    int32_t rank_end;
    ByteSet below;  // every byte on an edge inside this subtree
    uint8_t byte;   // the edge into this node
  };

  // tokens: (id, bytes); ids with empty bytes are left out (they can never be part of grammar text).
  TokenTrie(int32_t vocab_size, std::vector<std::pair<int32_t, std::string>> tokens);
  // Every token of the tokenizer except its special tokens (end of turn, tool markers), which the
  // sampler handles itself.
  static std::shared_ptr<const TokenTrie> of(const Tokenizer& tokenizer);

  const std::vector<Node>& nodes() const { return nodes_; }
  int32_t vocab_size() const { return vocab_size_; }
  int32_t ranks() const { return static_cast<int32_t>(token_of_rank_.size()); }
  int32_t token_of_rank(int32_t rank) const { return token_of_rank_[static_cast<size_t>(rank)]; }
  bool in_trie(int32_t token) const {
    return token >= 0 && token < vocab_size_ && !bytes_[static_cast<size_t>(token)].empty();
  }
  std::string_view bytes(int32_t token) const { return bytes_[static_cast<size_t>(token)]; }
  // The most characters a token below `node` reads after the node's bytes when every such token
  // continues with plain string text: well-formed UTF-8 from a character boundary (a last character
  // may be cut short) without '"', '\' or control bytes; -1 when some token does not. Where a
  // grammar state reads that many plain characters, the subtree is allowed whole.
  int32_t plain_chars(int32_t node) const { return plain_chars_[static_cast<size_t>(node)]; }
  // Bit per token id: the tokens in the trie.
  const std::vector<uint64_t>& members() const { return members_; }
  // Walks every grammar over this vocabulary shares (filled as grammars run).
  WalkCache& walks() const { return *walks_; }

 private:
  int32_t vocab_size_;
  void count_plain_chars();

  std::vector<Node> nodes_;  // nodes_[0] is the root (the empty prefix)
  std::vector<int32_t> token_of_rank_;
  std::vector<std::string> bytes_;  // per token id
  std::vector<int16_t> plain_chars_;  // per node
  std::vector<uint64_t> members_;
  std::unique_ptr<WalkCache> walks_ = std::make_unique<WalkCache>();
};

}  // namespace nanoserve::grammar
