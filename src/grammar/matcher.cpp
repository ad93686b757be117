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

void Matcher::allowed_bits(std::span<uint64_t> bits, int64_t vocab, std::span<const int64_t> end_tokens) {
  const auto mask = allowed();
  const size_t n = std::min(bits.size(), mask->size());
  std::copy_n(mask->begin(), n, bits.begin());
  std::fill(bits.begin() + static_cast<std::ptrdiff_t>(n), bits.end(), 0);
  if (vocab % 64) bits.back() &= (uint64_t{1} << (vocab % 64)) - 1;
  const bool any = std::any_of(bits.begin(), bits.end(), [](uint64_t word) { return word != 0; });
  bool ends = false;
  for (int64_t t : end_tokens) {
    if (t < 0 || t >= vocab) continue;
    uint64_t& word = bits[static_cast<size_t>(t) >> 6];
    const uint64_t bit = uint64_t{1} << (t & 63);
    word = can_end() ? word | bit : word & ~bit;
    ends = true;
  }
  if (!any && !(ends && can_end())) {
    throw Error("grammar: no token of the vocabulary can continue the structured output here");
  }
}

void Matcher::mask(std::span<float> logits, std::span<const int64_t> end_tokens) {
  constexpr float kRefused = -std::numeric_limits<float>::infinity();
  const auto vocab = static_cast<int64_t>(logits.size());
  std::vector<uint64_t> bits(static_cast<size_t>((vocab + 63) / 64));
  allowed_bits(bits, vocab, end_tokens);
  // A word at a time: a full word stays, an empty one is filled, a mixed one has its clear bits set.
  for (size_t base = 0; base < logits.size(); base += 64) {
    const size_t n = std::min<size_t>(64, logits.size() - base);
    const uint64_t in_range = n == 64 ? ~uint64_t{0} : (uint64_t{1} << n) - 1;
    const uint64_t word = bits[base >> 6];
    if (word == 0) {
      std::fill_n(logits.begin() + static_cast<std::ptrdiff_t>(base), n, kRefused);
      continue;
    }
    for (uint64_t refused = ~word & in_range; refused; refused &= refused - 1)
      logits[base + static_cast<size_t>(std::countr_zero(refused))] = kRefused;
  }
}

}  // namespace nanoserve::grammar
