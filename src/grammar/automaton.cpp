#include "grammar/automaton.h"

#include <fmt/format.h>

#include <algorithm>
#include <bit>
#include <map>
#include <unordered_map>
#include <unordered_set>

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
      if (up == -1) {
        out.push_back(kAccept);
      } else if (up == kCut) {
        out.push_back(kExit);
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
  s.accepting = std::binary_search(stacks.begin(), stacks.end(), kAccept);
  s.exits = stacks.front() == kExit;
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
      if (stacks[i] < 0) continue;  // kAccept, kExit: nothing more to read
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
// of a string, say) is allowed whole without visiting it. In a local state a token is allowed when
// a parse reads it without leaving the local part; one whose path passes a state where some parse
// has left it is an exit, judged later in each context.
void Automaton::walk(int32_t state, std::vector<uint64_t>& ranks, std::vector<uint64_t>* exits) {
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
    if (states_[static_cast<size_t>(s)].exits) {
      set_bits(*exits, node.rank_begin, node.rank_end);
      if (states_[static_cast<size_t>(s)].stacks.size() == 1) continue;  // no parse left inside to read on
    }
    set_bits(ranks, node.rank_begin, node.own_end);
    if (node.own_end == node.rank_end) continue;
    if (states_[static_cast<size_t>(s)].row.empty()) compute_row(s);
    if (node.below.subset_of(states_[static_cast<size_t>(s)].loops) || reads_plain(s, trie_->plain_chars(n))) {
      set_bits(ranks, node.own_end, node.rank_end);
      continue;
    }
    for (int32_t c = n + 1; c < node.end; c = nodes[static_cast<size_t>(c)].end) {
      const int32_t t = next(s, nodes[static_cast<size_t>(c)].byte);
      if (t != kDead) todo.emplace_back(c, t);
    }
  }
}

// The state every plain character (TokenTrie::plain_chars) leads to from `state`, each character's
// bytes read without dying or leaving the local part; kDead when some character cannot be read so
// or they do not all lead to one state. A JSON string's body leads to itself; a string bounded by
// maxLength, to its next position. (Following two next states was measured slower over
// JSONSchemaBench: states whose plain text reaches ever new ones cost more than their walks.)
int32_t Automaton::plain_next(int32_t state) {
  if (states_[static_cast<size_t>(state)].plain_next != kUnknown) return states_[static_cast<size_t>(state)].plain_next;
  // The check reads bytes and so makes states; it never grows the automaton past half its bound.
  int32_t target = states_.size() < kMaxStates / 2 ? kUnknown : kDead;
  std::vector<int32_t> frontier, reached;
  for (size_t i = 0; i < plain_characters().size() && target != kDead; ++i) {
    frontier = {state};
    for (ByteRange r : plain_characters()[i]) {
      reached.clear();
      for (int32_t from : frontier) {
        for (int b = r.first; b <= r.last && target != kDead; ++b) {
          const int32_t to = next(from, static_cast<uint8_t>(b));
          if (to == kDead || states_[static_cast<size_t>(to)].exits) target = kDead;
          if (target != kDead && std::find(reached.begin(), reached.end(), to) == reached.end()) reached.push_back(to);
        }
      }
      std::swap(frontier, reached);
    }
    if (target != kDead && (frontier.size() != 1 || (target != kUnknown && frontier[0] != target))) target = kDead;
    if (target != kDead) target = frontier[0];
  }
  states_[static_cast<size_t>(state)].plain_next = target;
  return target;
}

// Whether every string of `chars` plain characters (the last one possibly cut short) keeps
// `state` alive inside the local part: the chain of plain_next() states is that long, or loops.
// Each state keeps its chain's length, up to kMaxPlainChars.
bool Automaton::reads_plain(int32_t state, int32_t chars) {
  if (chars < 0 || chars > kMaxPlainChars) return false;
  if (states_[static_cast<size_t>(state)].plain_reach == kUnknown) {
    std::vector<int32_t> chain{state};  // states whose reach is not known yet, in chain order
    int32_t reach = 0;                  // of the state after the chain's last
    for (;;) {
      const int32_t next_state = plain_next(chain.back());
      if (next_state == kDead) break;
      if (std::find(chain.begin(), chain.end(), next_state) != chain.end() ||
          static_cast<int32_t>(chain.size()) > kMaxPlainChars) {
        reach = kMaxPlainChars;  // a loop, or longer than any question asked
        break;
      }
      if (states_[static_cast<size_t>(next_state)].plain_reach != kUnknown) {
        reach = std::min(kMaxPlainChars, states_[static_cast<size_t>(next_state)].plain_reach + 1);
        break;
      }
      chain.push_back(next_state);
    }
    for (size_t i = chain.size(); i-- > 0;) {
      states_[static_cast<size_t>(chain[i])].plain_reach = reach;
      reach = std::min(kMaxPlainChars, reach + 1);
    }
  }
  return chars <= states_[static_cast<size_t>(state)].plain_reach;
}

// The state cut below the deepest frame all its stacks share (kDead when they share none: the
// state is at the grammar's top level and has no context to cut). Every frame above the cut is
// re-interned on a bottom frame whose parent is kCut.
int32_t Automaton::local_state(int32_t state) {
  State& full = states_[static_cast<size_t>(state)];
  if (full.local != kUnknown) return full.local;
  std::vector<std::vector<int32_t>> chains;  // per stack: its frames from the top down to the root
  for (int32_t top : full.stacks) {
    if (top < 0) continue;
    auto& chain = chains.emplace_back();
    for (int32_t f = top; f >= 0; f = frames_[static_cast<size_t>(f)].parent) chain.push_back(f);
  }
  size_t shared = 0;  // frames all chains end with
  auto all_share = [&chains](size_t depth) {
    for (const auto& c : chains) {
      if (c.size() <= depth || c[c.size() - 1 - depth] != chains[0][chains[0].size() - 1 - depth]) return false;
    }
    return true;
  };
  while (!chains.empty() && all_share(shared)) ++shared;
  int32_t result = kDead;
  if (shared > 0) {
    std::vector<int32_t> stacks;
    for (const auto& c : chains) {
      int32_t parent = kCut;  // the shared frame nearest the top is the local part's bottom
      for (size_t i = c.size() - shared + 1; i-- > 0;) parent = frame(frames_[static_cast<size_t>(c[i])].pos, parent);
      stacks.push_back(parent);
    }
    result = intern(std::move(stacks));
  }
  states_[static_cast<size_t>(state)].local = result;
  return result;
}

const LocalWalk& Automaton::local(int32_t local_state) {
  if (states_[static_cast<size_t>(local_state)].walked) return *states_[static_cast<size_t>(local_state)].walked;
  const std::string key = signature(local_state);
  std::shared_ptr<const LocalWalk> shared = key.empty() ? nullptr : trie_->walks().find(key);
  if (!shared) {
    const size_t rank_words = static_cast<size_t>(trie_->ranks() + 63) / 64;
    std::vector<uint64_t> ranks(rank_words, 0), exits(rank_words, 0);
    walk(local_state, ranks, &exits);
    auto walked = std::make_shared<LocalWalk>();
    walked->allowed = mask_of_ranks(ranks);
    for (size_t w = 0; w < rank_words; ++w) {
      for (uint64_t bits = exits[w] & ~ranks[w]; bits; bits &= bits - 1)
        walked->exits.push_back(static_cast<int32_t>(w * 64) + std::countr_zero(bits));
    }
    shared = std::move(walked);
    if (!key.empty()) trie_->walks().keep(key, shared);
  }
  keep_mask(shared->bytes() / 8);
  states_[static_cast<size_t>(local_state)].walked = shared;
  return *shared;
}

// The local state's structure, the same for the same structure in any grammar: the rules its bottom
// frame's rule reaches, numbered in the order met (alternatives and elements in order) and written
// out, then the stacks as chains of (rule, alternative, offset), sorted. Two local states with the
// same signature read every byte string alike. Empty when more than kMaxSharedRules rules are
// reached (an object's state reaching the whole schema).
std::string Automaton::signature(int32_t local_state) const {
  const auto& elements = grammar_->elements;
  const auto& stacks = states_[static_cast<size_t>(local_state)].stacks;
  auto rule_of = [&](int32_t pos) {
    while (elements[static_cast<size_t>(pos)].kind != Element::Kind::End) ++pos;
    return elements[static_cast<size_t>(pos)].value;
  };
  std::string key;
  auto put = [](std::string& out, int32_t v) { out.append(reinterpret_cast<const char*>(&v), sizeof v); };
  std::unordered_map<int32_t, int32_t> numbers;
  std::vector<int32_t> rules;  // in the order met
  auto number = [&](int32_t rule) {
    auto [it, added] = numbers.try_emplace(rule, static_cast<int32_t>(rules.size()));
    if (added) rules.push_back(rule);
    return it->second;
  };
  int32_t bottom = stacks.front();
  while (frames_[static_cast<size_t>(bottom)].parent != kCut) bottom = frames_[static_cast<size_t>(bottom)].parent;
  number(rule_of(frames_[static_cast<size_t>(bottom)].pos));
  for (size_t i = 0; i < rules.size(); ++i) {
    if (rules.size() > kMaxSharedRules) return {};
    const auto& starts = grammar_->alternatives[static_cast<size_t>(rules[i])];
    put(key, static_cast<int32_t>(starts.size()));
    for (int32_t pos : starts) {
      for (;; ++pos) {
        const Element& e = elements[static_cast<size_t>(pos)];
        if (e.kind == Element::Kind::End) break;
        if (e.kind == Element::Kind::Call) {
          put(key, number(e.value));
        } else {
          put(key, -1);
          key.append(reinterpret_cast<const char*>(grammar_->byte_sets[static_cast<size_t>(e.value)].bits.data()),
                     sizeof(ByteSet::bits));
        }
      }
      put(key, -2);
    }
  }
  std::vector<std::string> chains;
  for (int32_t top : stacks) {
    std::string& chain = chains.emplace_back();
    for (int32_t f = top; f >= 0; f = frames_[static_cast<size_t>(f)].parent) {
      const int32_t pos = frames_[static_cast<size_t>(f)].pos;
      const int32_t rule = rule_of(pos);
      const auto& starts = grammar_->alternatives[static_cast<size_t>(rule)];
      const auto alt = std::upper_bound(starts.begin(), starts.end(), pos) - starts.begin() - 1;
      put(chain, numbers.at(rule));
      put(chain, static_cast<int32_t>(alt));
      put(chain, pos - starts[static_cast<size_t>(alt)]);
    }
    put(chain, -3);
  }
  std::sort(chains.begin(), chains.end());
  for (const std::string& chain : chains) key += chain;
  return key;
}

// Each exit token read from the full state. Ranks are in byte order, so a token shares its prefix
// with the one before and the states along it are reused.
void Automaton::resolve_exits(int32_t state, const std::vector<int32_t>& exits, Mask& mask) {
  std::vector<int32_t> path{state};  // path[i]: the state after the previous token's first i bytes
  std::string_view previous;
  for (int32_t rank : exits) {
    const int32_t token = trie_->token_of_rank(rank);
    const std::string_view bytes = trie_->bytes(token);
    size_t common = 0;
    while (common + 1 < path.size() && common < bytes.size() && bytes[common] == previous[common]) ++common;
    path.resize(common + 1);
    for (size_t i = common; i < bytes.size() && path.back() != kDead; ++i)
      path.push_back(next(path.back(), static_cast<uint8_t>(bytes[i])));
    if (path.size() == bytes.size() + 1 && path.back() != kDead)
      mask[static_cast<size_t>(token) >> 6] |= uint64_t{1} << (token & 63);
    if (path.back() == kDead) path.pop_back();  // a dead state is no prefix to resume from
    previous = bytes;
  }
}

// Ranks to token ids, one bit at a time: the set bits, or where most are set (a string's body),
// every token of the trie but the clear ones.
Automaton::Mask Automaton::mask_of_ranks(const std::vector<uint64_t>& ranks) const {
  size_t set = 0;
  for (uint64_t w : ranks) set += static_cast<size_t>(std::popcount(w));
  const bool dense = set * 2 > static_cast<size_t>(trie_->ranks());
  Mask mask = dense ? trie_->members() : Mask(static_cast<size_t>(trie_->vocab_size() + 63) / 64, 0);
  for (size_t w = 0; w < ranks.size(); ++w) {
    uint64_t bits = dense ? ~ranks[w] : ranks[w];
    if (dense && w + 1 == ranks.size() && trie_->ranks() % 64) bits &= (uint64_t{1} << (trie_->ranks() % 64)) - 1;
    for (; bits; bits &= bits - 1) {
      const int32_t token = trie_->token_of_rank(static_cast<int32_t>(w * 64) + std::countr_zero(bits));
      mask[static_cast<size_t>(token) >> 6] ^= uint64_t{1} << (token & 63);
    }
  }
  return mask;
}

// Counts `words` more of kept masks; past the bound every kept mask is dropped, to be recomputed.
void Automaton::keep_mask(size_t words) {
  if (mask_bytes_ + words * 8 > kMaxMaskBytes) {
    for (State& s : states_) {
      s.mask.reset();
      s.walked.reset();
    }
    mask_bytes_ = 0;
  }
  mask_bytes_ += words * 8;
}

std::shared_ptr<const Automaton::Mask> Automaton::allowed(int32_t state) {
  std::lock_guard lock(mutex_);
  if (states_[static_cast<size_t>(state)].mask) return states_[static_cast<size_t>(state)].mask;
  std::shared_ptr<Mask> mask;
  if (const int32_t cut = local_state(state); cut != kDead) {
    const LocalWalk& walked = local(cut);
    mask = std::make_shared<Mask>(walked.allowed);
    resolve_exits(state, walked.exits, *mask);
  } else {
    std::vector<uint64_t> ranks(static_cast<size_t>(trie_->ranks() + 63) / 64, 0);
    walk(state, ranks, nullptr);
    mask = std::make_shared<Mask>(mask_of_ranks(ranks));
  }
  keep_mask(mask->size());
  states_[static_cast<size_t>(state)].mask = mask;
  return mask;
}

}  // namespace nanoserve::grammar
