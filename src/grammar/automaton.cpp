#include "grammar/automaton.h"

#include <fmt/format.h>

#include <algorithm>
#include <bit>
#include <unordered_set>
#include <map>

#include "util/error.h"

namespace nanoserve::grammar {

Automaton::Automaton(std::shared_ptr<const Grammar> grammar, std::shared_ptr<const TokenTrie> trie)
    : grammar_(std::move(grammar)), trie_(std::move(trie)) {
  std::vector<int32_t> stacks;
  for (int32_t pos : grammar_->alternatives[static_cast<size_t>(grammar_->root)]) expand(pos, -1, stacks);
  start_ = intern(std::move(stacks));
  if (start_ == kDead) throw Error("grammar: matches nothing (the root rule has no alternative)");
}

int32_t Automaton::frame(int32_t pos, int32_t parent) {
  const uint64_t key = (static_cast<uint64_t>(static_cast<uint32_t>(pos)) << 32) | static_cast<uint32_t>(parent + 1);
  auto [it, added] = frame_ids_.try_emplace(key, static_cast<int32_t>(frames_.size()));
  if (added) frames_.push_back({pos, parent});
  return it->second;
}

// The stacks reached from element `pos` without consuming a byte: a byte set is a stack top; a
// call pushes its return frame (none when the call is the last element: a tail call, which keeps
// right recursion flat) and expands every alternative; the end of an alternative pops.
void Automaton::expand(int32_t pos, int32_t parent, std::vector<int32_t>& out) {
  const auto& elements = grammar_->elements;
  std::vector<std::pair<int32_t, int32_t>> work{{pos, parent}};
  std::unordered_set<uint64_t> seen;
  while (!work.empty()) {
    auto [p, up] = work.back();
    work.pop_back();
    const uint64_t key = (static_cast<uint64_t>(static_cast<uint32_t>(p)) << 32) | static_cast<uint32_t>(up + 1);
    if (!seen.insert(key).second) continue;
    const Element& e = elements[static_cast<size_t>(p)];
    if (e.kind == Element::Kind::Bytes) {
      out.push_back(frame(p, up));
    } else if (e.kind == Element::Kind::End) {
      if (up < 0) {
        out.push_back(kAccept);
      } else {
        const Frame f = frames_[static_cast<size_t>(up)];
        work.emplace_back(f.pos, f.parent);
      }
    } else {
      const bool tail = elements[static_cast<size_t>(p) + 1].kind == Element::Kind::End;
      const int32_t ret = tail ? up : frame(p + 1, up);
      for (int32_t alt : grammar_->alternatives[static_cast<size_t>(e.value)]) work.emplace_back(alt, ret);
    }
  }
}

int32_t Automaton::intern(std::vector<int32_t> stacks) {
  if (stacks.empty()) return kDead;
  if (stacks.size() > kMaxStacks || frames_.size() > kMaxFrames) {
    throw Error(
        fmt::format("grammar: more than {} parses alive at once; the grammar is too ambiguous to run", kMaxStacks));
  }
  std::sort(stacks.begin(), stacks.end());
  stacks.erase(std::unique(stacks.begin(), stacks.end()), stacks.end());
  auto it = state_ids_.find(stacks);
  if (it != state_ids_.end()) return it->second;
  if (states_.size() >= kMaxStates) {
    throw Error(fmt::format("grammar: more than {} parser states; the grammar is too ambiguous to run", kMaxStates));
  }
  const auto id = static_cast<int32_t>(states_.size());
  State s;
  s.accepting = stacks.front() == kAccept;
  s.stacks = stacks;
  states_.push_back(std::move(s));
  state_ids_.emplace(std::move(stacks), id);
  return id;
}

// All 256 transitions at once: bytes accepted by the same stacks lead to the same state, so each
// distinct group of stacks is expanded once.
void Automaton::compute_row(int32_t state) {
  const std::vector<int32_t> stacks = states_[static_cast<size_t>(state)].stacks;
  std::vector<int32_t> row(256, kDead);
  std::map<std::vector<int32_t>, int32_t> by_group;
  std::vector<int32_t> group;
  for (int b = 0; b < 256; ++b) {
    group.clear();
    for (size_t i = 0; i < stacks.size(); ++i) {
      if (stacks[i] == kAccept) continue;
      const Frame f = frames_[static_cast<size_t>(stacks[i])];
      const Element& e = grammar_->elements[static_cast<size_t>(f.pos)];
      if (grammar_->byte_sets[static_cast<size_t>(e.value)].has(static_cast<uint8_t>(b)))
        group.push_back(static_cast<int32_t>(i));
    }
    if (group.empty()) continue;
    auto it = by_group.find(group);
    if (it == by_group.end()) {
      std::vector<int32_t> next;
      for (int32_t i : group) {
        const Frame f = frames_[static_cast<size_t>(stacks[static_cast<size_t>(i)])];
        expand(f.pos + 1, f.parent, next);
      }
      it = by_group.emplace(group, intern(std::move(next))).first;
    }
    row[static_cast<size_t>(b)] = it->second;
  }
  State& s = states_[static_cast<size_t>(state)];
  for (int b = 0; b < 256; ++b) {
    if (row[static_cast<size_t>(b)] == state) s.loops.add(static_cast<uint8_t>(b));
  }
  s.row = std::move(row);
}

std::shared_ptr<Automaton> Automaton::shared(const std::shared_ptr<const Grammar>& grammar,
                                             const std::shared_ptr<const TokenTrie>& trie) {
  static std::mutex mutex;
  static std::map<std::pair<const Grammar*, const TokenTrie*>, std::weak_ptr<Automaton>> live;
  std::lock_guard lock(mutex);
  std::erase_if(live, [](const auto& entry) { return entry.second.expired(); });
  auto& slot = live[{grammar.get(), trie.get()}];
  auto automaton = slot.lock();
  if (!automaton) {
    automaton = std::make_shared<Automaton>(grammar, trie);
    slot = automaton;
  }
  return automaton;
}

int32_t Automaton::advance(int32_t state, std::string_view bytes) {
  std::lock_guard lock(mutex_);
  for (char c : bytes) {
    state = next(state, static_cast<uint8_t>(c));
    if (state == kDead) break;
  }
  return state;
}

bool Automaton::accepting(int32_t state) const {
  std::lock_guard lock(mutex_);
  return states_[static_cast<size_t>(state)].accepting;
}

bool Automaton::finished(int32_t state) const {
  std::lock_guard lock(mutex_);
  const State& s = states_[static_cast<size_t>(state)];
  return s.accepting && s.stacks.size() == 1;
}

int32_t Automaton::next(int32_t state, uint8_t byte) {
  if (states_[static_cast<size_t>(state)].row.empty()) compute_row(state);
  return states_[static_cast<size_t>(state)].row[byte];
}

namespace {

void set_bits(std::vector<uint64_t>& bits, int32_t begin, int32_t end) {
  for (int32_t i = begin; i < end;) {
    if ((i & 63) == 0 && i + 64 <= end) {
      bits[static_cast<size_t>(i >> 6)] = ~uint64_t{0};
      i += 64;
    } else {
      bits[static_cast<size_t>(i >> 6)] |= uint64_t{1} << (i & 63);
      ++i;
    }
  }
}

}  // namespace

// Depth-first over the trie. A subtree whose bytes all loop back to the current state (the body
// of a string, say) is allowed whole without visiting it.
void Automaton::walk(int32_t state, std::vector<uint64_t>& ranks) {
  const auto& nodes = trie_->nodes();
  std::vector<std::pair<int32_t, int32_t>> todo;  // (node, state after its bytes)
  for (int32_t c = 1; c < nodes[0].end; c = nodes[static_cast<size_t>(c)].end) {
    const int32_t s = next(state, nodes[static_cast<size_t>(c)].byte);
    if (s != kDead) todo.emplace_back(c, s);
  }
  while (!todo.empty()) {
    auto [n, s] = todo.back();
    todo.pop_back();
    const TokenTrie::Node& node = nodes[static_cast<size_t>(n)];
    set_bits(ranks, node.rank_begin, node.own_end);
    if (node.own_end == node.rank_end) continue;
    if (states_[static_cast<size_t>(s)].row.empty()) compute_row(s);
    if (node.below.subset_of(states_[static_cast<size_t>(s)].loops)) {
      set_bits(ranks, node.own_end, node.rank_end);
      continue;
    }
    for (int32_t c = n + 1; c < node.end; c = nodes[static_cast<size_t>(c)].end) {
      const int32_t t = next(s, nodes[static_cast<size_t>(c)].byte);
      if (t != kDead) todo.emplace_back(c, t);
    }
  }
}

std::shared_ptr<const Automaton::Mask> Automaton::allowed(int32_t state) {
  std::lock_guard lock(mutex_);
  if (states_[static_cast<size_t>(state)].mask) return states_[static_cast<size_t>(state)].mask;
  std::vector<uint64_t> ranks(static_cast<size_t>(trie_->ranks() + 63) / 64, 0);
  walk(state, ranks);
  const size_t words = static_cast<size_t>(trie_->vocab_size() + 63) / 64;
  if (mask_bytes_ + words * 8 > kMaxMaskBytes) {  // keep memory bounded: start the cache over
    for (State& s : states_) s.mask.reset();
    mask_bytes_ = 0;
  }
  auto mask = std::make_shared<Mask>(words, 0);
  for (size_t w = 0; w < ranks.size(); ++w) {
    for (uint64_t bits = ranks[w]; bits; bits &= bits - 1) {
      const int32_t token = trie_->token_of_rank(static_cast<int32_t>(w * 64) + std::countr_zero(bits));
      (*mask)[static_cast<size_t>(token) >> 6] |= uint64_t{1} << (token & 63);
    }
  }
  mask_bytes_ += words * 8;
  states_[static_cast<size_t>(state)].mask = mask;
  return mask;
}

}  // namespace nanoserve::grammar
