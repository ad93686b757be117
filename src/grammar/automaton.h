// The grammar run as a lazily built DFA. A matcher configuration is a set of stacks (the positions
// the parse may be at, each with the rule calls it returns to, as in llama.cpp's grammar stacks but
// shared as a tree of interned frames). Each distinct set is numbered once, and its transitions on
// all 256 bytes are computed the first time it is reached: inside a JSON string the set after "ab"
// is the set after "a", so walking the token trie becomes table lookups, and the allowed-token mask
// of each state is computed once and kept. One automaton serves every sequence of a grammar (the n
// samples of a request, and every request with the same schema), behind one lock.
//
// Masks are split by context, as XGrammar's context-independent token cache splits them. A state's
// stacks share their deepest frames (the context: which property, which array item); cut there,
// the rest is a local state that the same position in every context shares. Its trie walk, once,
// says which tokens a parse takes without leaving the local part (allowed in every context) and
// which leave it (a JSON string's closing quote and what follows it): only those few are checked
// against each full state. The first mask of a string in a new context costs its exits, not a
// walk of the whole vocabulary; and the walk itself is shared by every grammar over the vocabulary
// whose local state has the same structure (walk_cache.h).
#pragma once

#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "grammar/grammar.h"
#include "grammar/token_trie.h"

namespace nanoserve::grammar {

struct StacksHash {
  size_t operator()(const std::vector<int32_t>& v) const {
    uint64_t h = 1469598103934665603ull;
    for (int32_t x : v) h = (h ^ static_cast<uint32_t>(x)) * 1099511628211ull;
    return h;
  }
};

class Automaton {
 public:
  static constexpr int32_t kDead = -1;  // no stack survives: the text cannot be part of the language

  Automaton(std::shared_ptr<const Grammar> grammar, std::shared_ptr<const TokenTrie> trie);

  // The automaton every matcher of this grammar and vocabulary shares while any is alive.
  static std::shared_ptr<Automaton> shared(const std::shared_ptr<const Grammar>& grammar,
                                           const std::shared_ptr<const TokenTrie>& trie);

  using Mask = std::vector<uint64_t>;  // bit per token id

  int32_t start() const { return start_; }
  int32_t advance(int32_t state, std::string_view bytes);  // kDead when a byte is refused
  bool accepting(int32_t state) const;
  // The grammar is complete and nothing more may follow.
  bool finished(int32_t state) const;

  // The tokens whose bytes keep `state` alive. Computed on first use, then kept.
  std::shared_ptr<const Mask> allowed(int32_t state);

  const TokenTrie& trie() const { return *trie_; }
  size_t states() const { return states_.size(); }

  // Bounds on the work an ambiguous grammar can cause: states, stacks in one state, frames.
  static constexpr size_t kMaxStates = 200'000;
  static constexpr size_t kMaxStacks = 16'384;
  static constexpr size_t kMaxFrames = 4'000'000;
  static constexpr size_t kMaxMaskBytes = 64ull << 20;  // masks kept per automaton
  static constexpr size_t kMaxSharedRules = 64;  // a local state reaching more is not worth a key

 private:
  struct Frame {
    int32_t pos;     // index into Grammar::elements
    int32_t parent;  // the frame to return to, -1 at the root
  };
  static constexpr int32_t kMaxPlainChars = 256;  // deeper subtrees are walked
  struct State {
    // Sorted frame ids whose element is a byte set; kAccept when complete; kExit (local states
    // only) when a parse has returned past the cut.
    std::vector<int32_t> stacks;
    bool accepting = false;
    bool exits = false;
    std::vector<int32_t> row;          // next state per byte, once computed
    ByteSet loops;                     // bytes that lead back to this state
    std::shared_ptr<const Mask> mask;  // allowed tokens, once computed
    int32_t local = kUnknown;          // full states: the local state, or kDead when nothing is cut
    int32_t plain_next = kUnknown;     // where every plain character leads (see plain_next())
    int32_t plain_reach = kUnknown;    // how many plain characters it reads (see reads_plain())
    std::shared_ptr<const LocalWalk> walked;  // local states: once computed
  };
  static constexpr int32_t kAccept = -1;
  static constexpr int32_t kExit = -2;
  static constexpr int32_t kCut = -2;  // the parent of a local state's bottom frame
  static constexpr int32_t kUnknown = -3;

  int32_t next(int32_t state, uint8_t byte);  // with mutex_ held, as everything below
  int32_t frame(int32_t pos, int32_t parent);
  void expand(int32_t pos, int32_t parent, std::vector<int32_t>& out);
  int32_t intern(std::vector<int32_t> stacks);
  void compute_row(int32_t state);
  // Ranks of the tokens the state allows; with `exits`, of those a parse leaves the local part in.
  void walk(int32_t state, std::vector<uint64_t>& ranks, std::vector<uint64_t>* exits);
  int32_t plain_next(int32_t state);
  bool reads_plain(int32_t state, int32_t chars);
  int32_t local_state(int32_t state);
  const LocalWalk& local(int32_t local_state);
  std::string signature(int32_t local_state) const;
  void resolve_exits(int32_t state, const std::vector<int32_t>& exits, Mask& mask);
  Mask mask_of_ranks(const std::vector<uint64_t>& ranks) const;
  void keep_mask(size_t words);

  mutable std::mutex mutex_;
  std::shared_ptr<const Grammar> grammar_;
  std::shared_ptr<const TokenTrie> trie_;
  std::vector<Frame> frames_;
  std::unordered_map<uint64_t, int32_t> frame_ids_;
  std::vector<State> states_;
  std::unordered_map<std::vector<int32_t>, int32_t, StacksHash> state_ids_;
  size_t mask_bytes_ = 0;
  int32_t start_;
};

}  // namespace nanoserve::grammar
