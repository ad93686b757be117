#include "tokenizer/bpe.h"

#include <queue>

#include "util/error.h"
#include "util/utf8.h"

namespace nanoserve {

using json = nlohmann::json;

namespace {

// A merge is written "a b" (older files) or ["a", "b"].
std::pair<std::string, std::string> merge_parts(const json& m) {
  if (m.is_array() && m.size() == 2) return {m[0].get<std::string>(), m[1].get<std::string>()};
  if (m.is_string()) {
    const auto s = m.get<std::string>();
    const size_t space = s.find(' ', 1);
    if (space != std::string::npos) return {s.substr(0, space), s.substr(space + 1)};
  }
  fail("BPE merge {} is neither \"a b\" nor [\"a\", \"b\"]", m.dump());
}

}  // namespace

BpeModel::BpeModel(const json& model) {
  for (const char* unsupported : {"continuing_subword_prefix", "end_of_word_suffix", "dropout"}) {
    if (model.contains(unsupported) && !model[unsupported].is_null()) {
      fail("BPE option '{}' is not supported", unsupported);
    }
  }
  if (model.value("byte_fallback", false)) fail("BPE option 'byte_fallback' is not supported yet");
  ignore_merges_ = model.value("ignore_merges", false);
  for (const auto& [token, id] : model.at("vocab").items()) vocab_[token] = id.get<int32_t>();
  int32_t rank = 0;
  for (const auto& m : model.at("merges")) {
    auto [a, b] = merge_parts(m);
    auto ia = vocab_.find(a), ib = vocab_.find(b), im = vocab_.find(a + b);
    if (ia == vocab_.end() || ib == vocab_.end() || im == vocab_.end()) {
      fail("BPE merge '{} {}' refers to a token that is not in the vocabulary", a, b);
    }
    merges_.emplace(pair_key(ia->second, ib->second), Merge{rank++, im->second});
  }
}

void BpeModel::encode(std::string_view piece, std::vector<int32_t>& out) const {
  if (piece.empty()) return;
  if (ignore_merges_) {
    auto it = vocab_.find(std::string(piece));
    if (it != vocab_.end()) {
      out.push_back(it->second);
      return;
    }
  }
  // Symbols as a doubly linked list over a vector; a removed symbol has id -1.
  struct Symbol {
    int32_t id;
    int prev, next;
  };
  std::vector<Symbol> symbols;
  for (size_t pos = 0; pos < piece.size();) {
    const size_t start = pos;
    next_code_point(piece, pos);
    auto it = vocab_.find(std::string(piece.substr(start, pos - start)));
    if (it == vocab_.end()) fail("character '{}' is not in the BPE vocabulary", piece.substr(start, pos - start));
    const int index = static_cast<int>(symbols.size());
    symbols.push_back({it->second, index - 1, index + 1});
  }
  symbols.back().next = -1;

  // Candidate merges, lowest rank first and leftmost among equal ranks; stale ones are skipped.
  struct Candidate {
    int32_t rank;
    int left;
    int32_t left_id, right_id;
    bool operator>(const Candidate& o) const { return rank != o.rank ? rank > o.rank : left > o.left; }
  };
  std::priority_queue<Candidate, std::vector<Candidate>, std::greater<>> queue;
  auto consider = [&](int left) {
    if (left < 0 || symbols[static_cast<size_t>(left)].next < 0) return;
    const int right = symbols[static_cast<size_t>(left)].next;
    const int32_t a = symbols[static_cast<size_t>(left)].id, b = symbols[static_cast<size_t>(right)].id;
    auto it = merges_.find(pair_key(a, b));
    if (it != merges_.end()) queue.push({it->second.rank, left, a, b});
  };
  for (int i = 0; i + 1 < static_cast<int>(symbols.size()); ++i) consider(i);
  while (!queue.empty()) {
    const Candidate c = queue.top();
    queue.pop();
    Symbol& left = symbols[static_cast<size_t>(c.left)];
    if (left.id != c.left_id || left.next < 0 || symbols[static_cast<size_t>(left.next)].id != c.right_id) continue;
    Symbol& right = symbols[static_cast<size_t>(left.next)];
    left.id = merges_.at(pair_key(c.left_id, c.right_id)).merged;
    right.id = -1;
    left.next = right.next;
    if (right.next >= 0) symbols[static_cast<size_t>(right.next)].prev = c.left;
    consider(left.prev);
    consider(c.left);
  }
  for (int i = 0; i >= 0; i = symbols[static_cast<size_t>(i)].next) out.push_back(symbols[static_cast<size_t>(i)].id);
}

}  // namespace nanoserve
