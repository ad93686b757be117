#include "grammar/matcher.h"

#include <algorithm>
#include <limits>

#include "util/error.h"

namespace nanoserve::grammar {

Matcher::Matcher(const std::shared_ptr<const Grammar>& grammar, const std::shared_ptr<const TokenTrie>& trie,
                 bool own_automaton)
    : automaton_(own_automaton ? std::make_shared<Automaton>(grammar, trie) : Automaton::shared(grammar, trie)),
      state_(automaton_->start()) {}

bool Matcher::accept_bytes(std::string_view bytes) {
  const int32_t s = automaton_->advance(state_, bytes);
  if (s == Automaton::kDead) return false;
  state_ = s;
  return true;
}

bool Matcher::accept(int32_t token) {
  const TokenTrie& trie = automaton_->trie();
  return trie.in_trie(token) && accept_bytes(trie.bytes(token));
}

bool Matcher::allows(int32_t token) {
  if (token < 0 || token >= automaton_->trie().vocab_size()) return false;
  return ((*allowed())[static_cast<size_t>(token) >> 6] >> (token & 63)) & 1;
}

void Matcher::mask(std::span<float> logits, std::span<const int64_t> end_tokens) {
  constexpr float kRefused = -std::numeric_limits<float>::infinity();
  const bool can_end_here = can_end();
  std::vector<float> ends;
  for (int64_t t : end_tokens) {
    if (t >= 0 && static_cast<size_t>(t) < logits.size()) ends.push_back(logits[static_cast<size_t>(t)]);
  }
  const auto mask = allowed();
  const auto& bits = *mask;
  bool any = false;
  for (size_t i = 0; i < logits.size(); ++i) {
    const size_t w = i >> 6;
    const uint64_t word = w < bits.size() ? bits[w] : 0;
    if (word == ~uint64_t{0} && i + 64 <= logits.size() && (i & 63) == 0) {
      any = true;
      i += 63;
      continue;
    }
    if ((word >> (i & 63)) & 1) {
      any = true;
    } else {
      logits[i] = kRefused;
    }
  }
  size_t k = 0;
  for (int64_t t : end_tokens) {
    if (t >= 0 && static_cast<size_t>(t) < logits.size())
      logits[static_cast<size_t>(t)] = can_end_here ? ends[k++] : kRefused;
  }
  if (!any && !(can_end_here && !ends.empty())) {
    throw Error("grammar: no token of the vocabulary can continue the structured output here");
  }
}

}  // namespace nanoserve::grammar
