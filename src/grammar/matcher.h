// One sequence's place in a grammar: which tokens may come next, and advancing by the chosen one.
// End of sequence is allowed exactly where the grammar can end; the tokenizer's other special
// tokens never are.
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <string_view>
#include <vector>

#include "grammar/automaton.h"

namespace nanoserve::grammar {

class Matcher {
 public:
  // own_automaton: not shared with the grammar's other matchers (a cold cache, for benchmarks).
  Matcher(const std::shared_ptr<const Grammar>& grammar, const std::shared_ptr<const TokenTrie>& trie,
          bool own_automaton = false);
  // An independent copy at the same place (the n > 1 samples of one request).
  std::unique_ptr<Matcher> clone() const { return std::make_unique<Matcher>(*this); }

  // Advances by the token's bytes; false, and nothing changes, when the grammar refuses them.
  bool accept(int32_t token);
  bool accept_bytes(std::string_view bytes);

  bool can_end() const { return automaton_->accepting(state_); }
  bool finished() const { return automaton_->finished(state_); }  // nothing more may follow

  // Bit per token id (end of sequence excluded).
  std::shared_ptr<const Automaton::Mask> allowed() { return automaton_->allowed(state_); }
  bool allows(int32_t token);
  // Writes the bit of each id in [0, vocab) (bits: (vocab + 63) / 64 words), set for the tokens
  // that may come next: the allowed ones, and the end tokens where the grammar can end here. Throws
  // Error when nothing at all is allowed.
  void allowed_bits(std::span<uint64_t> bits, int64_t vocab, std::span<const int64_t> end_tokens);
  // Sets the logits of the tokens allowed_bits leaves out to -infinity.
  void mask(std::span<float> logits, std::span<const int64_t> end_tokens);

 private:
  std::shared_ptr<Automaton> automaton_;
  int32_t state_;
};

}  // namespace nanoserve::grammar
