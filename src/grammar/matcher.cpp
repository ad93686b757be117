#include "grammar/matcher.h"

#include <algorithm>
#include <bit>
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
  // A word at a time: a full word stays, an empty one is filled, a mixed one has its clear bits set.
  for (size_t base = 0; base < logits.size(); base += 64) {
    const size_t n = std::min<size_t>(64, logits.size() - base);
    const uint64_t in_range = n == 64 ? ~uint64_t{0} : (uint64_t{1} << n) - 1;
    const uint64_t word = (base >> 6 < bits.size() ? bits[base >> 6] : 0) & in_range;
    any = any || word != 0;
    if (word == 0) {
      std::fill_n(logits.begin() + static_cast<std::ptrdiff_t>(base), n, kRefused);
      continue;
    }
    for (uint64_t refused = ~word & in_range; refused; refused &= refused - 1)
      logits[base + static_cast<size_t>(std::countr_zero(refused))] = kRefused;
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
