#include "grammar/grammar.h"

#include <fmt/format.h>

#include <algorithm>
#include <map>

#include "util/error.h"

namespace nanoserve::grammar {

int32_t GrammarBuilder::declare(const std::string& name) {
  if (find(name) >= 0) throw Error(fmt::format("grammar: rule '{}' is defined twice", name));
  names_.push_back(name);
  bodies_.emplace_back();
  defined_.push_back(false);
  return static_cast<int32_t>(names_.size()) - 1;
}

void GrammarBuilder::define(int32_t rule, Expr body) {
  bodies_[static_cast<size_t>(rule)] = std::move(body);
  defined_[static_cast<size_t>(rule)] = true;
}

int32_t GrammarBuilder::find(const std::string& name) const {
  for (size_t i = 0; i < names_.size(); ++i) {
    if (names_[i] == name) return static_cast<int32_t>(i);
  }
  return -1;
}

namespace {

using Sequence = std::vector<Element>;
using Alternatives = std::vector<Sequence>;

// Lowers Expr trees into rules of flat alternatives, adding helper rules for nested alternatives,
// multi-byte characters and repetitions.
class Lowerer {
 public:
  explicit Lowerer(const std::vector<std::string>& names) : names_(names), rules_(names.size()) {}

  void lower_rule(int32_t rule, const Expr& body) { rules_[static_cast<size_t>(rule)] = alternatives(body, rule); }

  Grammar finish(int32_t root) {
    Grammar g;
    g.root = root;
    g.rule_names = names_;
    g.byte_sets = std::move(byte_sets_);
    g.alternatives.resize(rules_.size());
    for (size_t r = 0; r < rules_.size(); ++r) {
      for (const Sequence& seq : rules_[r]) {
        g.alternatives[r].push_back(static_cast<int32_t>(g.elements.size()));
        g.elements.insert(g.elements.end(), seq.begin(), seq.end());
        g.elements.push_back({Element::Kind::End, static_cast<int32_t>(r)});
      }
    }
    return g;
  }

 private:
  int32_t helper(int32_t owner, Alternatives alts) {
    names_.push_back(fmt::format("{}-{}", names_[static_cast<size_t>(owner)], names_.size()));
    rules_.push_back(std::move(alts));
    count(rules_.back());
    return static_cast<int32_t>(rules_.size()) - 1;
  }

  void count(const Alternatives& alts) {
    for (const auto& s : alts) elements_ += s.size() + 1;
    too_large(elements_);
  }

  static void too_large(size_t elements) {
    if (elements > GrammarBuilder::kMaxElements) {
      throw Error(fmt::format("grammar: too large (more than {} elements after expanding repetitions)",
                              GrammarBuilder::kMaxElements));
    }
  }

  int32_t byte_set(const ByteSet& set) {
    auto [it, added] = byte_set_ids_.try_emplace(set.bits, static_cast<int32_t>(byte_sets_.size()));
    if (added) byte_sets_.push_back(set);
    return it->second;
  }

  Element bytes(uint8_t first, uint8_t last) {
    ByteSet set;
    set.add_range(first, last);
    return {Element::Kind::Bytes, byte_set(set)};
  }

  Alternatives alternatives(const Expr& e, int32_t owner) {
    Alternatives alts;
    if (e.kind == Expr::Kind::Alt) {
      for (const Expr& item : e.items) {
        alts.emplace_back();
        append(item, alts.back(), owner);
      }
    } else {
      alts.emplace_back();
      append(e, alts.back(), owner);
    }
    count(alts);
    return alts;
  }

  void append_chars(const Expr& e, Sequence& seq, int32_t owner) {
    std::vector<ByteRangeSeq> all;
    for (CodeRange r : e.ranges) {
      for (auto& s : utf8_sequences(r)) all.push_back(std::move(s));
    }
    const bool single_bytes = std::all_of(all.begin(), all.end(), [](const auto& s) { return s.size() == 1; });
    if (single_bytes) {  // one set (empty when the class matches nothing)
      ByteSet set;
      for (const auto& s : all) set.add_range(s[0].first, s[0].second);
      seq.push_back({Element::Kind::Bytes, byte_set(set)});
      return;
    }
    if (all.size() == 1) {
      for (auto [first, last] : all[0]) seq.push_back(bytes(first, last));
      return;
    }
    std::vector<uint32_t> key;  // the same class lowers to the same helper rule
    for (CodeRange r : e.ranges) key.insert(key.end(), {r.first, r.last});
    auto it = char_rules_.find(key);
    if (it == char_rules_.end()) {
      Alternatives alts;
      for (const auto& s : all) {
        alts.emplace_back();
        for (auto [first, last] : s) alts.back().push_back(bytes(first, last));
      }
      it = char_rules_.emplace(key, helper(owner, std::move(alts))).first;
    }
    seq.push_back({Element::Kind::Call, it->second});
  }

  // One element standing for the whole of e.
  Element unit(const Expr& e, int32_t owner) {
    if (e.kind == Expr::Kind::Alt) return {Element::Kind::Call, helper(owner, alternatives(e, owner))};
    Sequence seq;
    append(e, seq, owner);
    if (seq.size() == 1) return seq[0];
    return {Element::Kind::Call, helper(owner, {std::move(seq)})};
  }

  void append_repeat(const Expr& e, Sequence& seq, int32_t owner) {
    const Element item = unit(e.items[0], owner);
    too_large(seq.size() + static_cast<size_t>(std::max(e.min, e.max)));
    for (int32_t i = 0; i < e.min; ++i) seq.push_back(item);
    if (e.max < 0) {  // star := item star | ε
      const int32_t star = helper(owner, {});
      rules_[static_cast<size_t>(star)] = {{item, {Element::Kind::Call, star}}, {}};
      seq.push_back({Element::Kind::Call, star});
      return;
    }
    int32_t tail = -1;  // at most k more: opt_k := item opt_{k-1} | ε
    for (int32_t k = 0; k < e.max - e.min; ++k) {
      Sequence more{item};
      if (tail >= 0) more.push_back({Element::Kind::Call, tail});
      tail = helper(owner, {std::move(more), {}});
    }
    if (tail >= 0) seq.push_back({Element::Kind::Call, tail});
  }

  void append(const Expr& e, Sequence& seq, int32_t owner) {
    switch (e.kind) {
      case Expr::Kind::Chars: append_chars(e, seq, owner); break;
      case Expr::Kind::Bytes:
        seq.push_back(bytes(static_cast<uint8_t>(e.ranges[0].first), static_cast<uint8_t>(e.ranges[0].last)));
        break;
      case Expr::Kind::Seq:
        for (const Expr& item : e.items) append(item, seq, owner);
        break;
      case Expr::Kind::Alt: seq.push_back(unit(e, owner)); break;
      case Expr::Kind::Ref: seq.push_back({Element::Kind::Call, e.rule}); break;
      case Expr::Kind::Repeat: append_repeat(e, seq, owner); break;
    }
  }

  std::vector<std::string> names_;
  std::vector<Alternatives> rules_;
  std::vector<ByteSet> byte_sets_;
  std::map<std::array<uint64_t, 4>, int32_t> byte_set_ids_;
  std::map<std::vector<uint32_t>, int32_t> char_rules_;
  size_t elements_ = 0;
};

// Rules that can match the empty string.
std::vector<bool> nullable_rules(const Grammar& g) {
  std::vector<bool> nullable(g.alternatives.size(), false);
  for (bool changed = true; changed;) {
    changed = false;
    for (size_t r = 0; r < g.alternatives.size(); ++r) {
      if (nullable[r]) continue;
      for (int32_t pos : g.alternatives[r]) {
        const Element* e = &g.elements[static_cast<size_t>(pos)];
        while (e->kind == Element::Kind::Call && nullable[static_cast<size_t>(e->value)]) ++e;
        if (e->kind == Element::Kind::End) {
          nullable[r] = changed = true;
          break;
        }
      }
    }
  }
  return nullable;
}

// A rule that can reach itself without consuming a byte would make the matcher expand forever.
void refuse_left_recursion(const Grammar& g) {
  const auto nullable = nullable_rules(g);
  const size_t n = g.alternatives.size();
  std::vector<std::vector<int32_t>> starts(n);  // rules a rule can begin with
  for (size_t r = 0; r < n; ++r) {
    for (int32_t pos : g.alternatives[r]) {
      for (const Element* e = &g.elements[static_cast<size_t>(pos)]; e->kind == Element::Kind::Call; ++e) {
        starts[r].push_back(e->value);
        if (!nullable[static_cast<size_t>(e->value)]) break;
      }
    }
  }
  std::vector<uint8_t> color(n, 0);  // 0 new, 1 on the path, 2 done
  for (size_t start = 0; start < n; ++start) {
    if (color[start]) continue;
    std::vector<std::pair<int32_t, size_t>> stack{{static_cast<int32_t>(start), 0}};
    color[start] = 1;
    while (!stack.empty()) {
      auto& [rule, next] = stack.back();
      const auto& edges = starts[static_cast<size_t>(rule)];
      if (next == edges.size()) {
        color[static_cast<size_t>(rule)] = 2;
        stack.pop_back();
        continue;
      }
      const int32_t to = edges[next++];
      if (color[static_cast<size_t>(to)] == 1) {
        throw Error(
            fmt::format("grammar: rule '{}' can reach itself without consuming input (left recursion, or a repetition "
                        "of something that may be empty); rewrite it right-recursively",
                        g.rule_names[static_cast<size_t>(to)]));
      }
      if (color[static_cast<size_t>(to)] == 0) {
        color[static_cast<size_t>(to)] = 1;
        stack.emplace_back(to, 0);
      }
    }
  }
}

}  // namespace

Grammar GrammarBuilder::compile(int32_t root) const {
  for (size_t r = 0; r < names_.size(); ++r) {
    if (!defined_[r]) throw Error(fmt::format("grammar: rule '{}' is used but never defined", names_[r]));
  }
  Lowerer lowerer(names_);
  for (size_t r = 0; r < names_.size(); ++r) lowerer.lower_rule(static_cast<int32_t>(r), bodies_[r]);
  Grammar g = lowerer.finish(root);
  refuse_left_recursion(g);
  return g;
}

}  // namespace nanoserve::grammar
