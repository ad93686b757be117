#include "tokenizer/bpe.h"

#include <algorithm>
#include <atomic>
#include <unordered_map>

#include "util/error.h"
#include "util/utf8.h"

namespace nanoserve {

BpeModel::BpeModel(Vocab vocab, std::span<const MergePair> merges, Options options)
    : vocab_(std::move(vocab)), options_(std::move(options)) {
  for (int b = 0; b < 256; ++b) {
    byte_ids_[b] = vocab_.find(fmt::format("<0x{:02X}>", b)).value_or(-1);
  }
  if (!options_.unk_token.empty()) {
    const auto unk = vocab_.find(options_.unk_token);
    if (!unk) fail("BPE unk_token '{}' is not in the vocabulary", options_.unk_token);
    unk_id_ = *unk;
  }
  // Ids first, then the inserts, each prefetching the slot of one a little further on.
  struct Resolved {
    int32_t a, b, merged;
  };
  std::vector<Resolved> resolved;
  resolved.reserve(merges.size());
  std::string joined;
  for (const auto& [a, b] : merges) {
    joined.assign(a).append(b);
    const auto ia = vocab_.find(a), ib = vocab_.find(b), im = vocab_.find(joined);
    if (!ia || !ib || !im) fail("BPE merge '{} {}' refers to a token that is not in the vocabulary", a, b);
    resolved.push_back({*ia, *ib, *im});
  }
  constexpr size_t kAhead = 16;
  merges_.reserve(resolved.size());
  for (size_t rank = 0; rank < resolved.size(); ++rank) {
    if (rank + kAhead < resolved.size()) merges_.prefetch(resolved[rank + kAhead].a, resolved[rank + kAhead].b);
    merges_.insert(resolved[rank].a, resolved[rank].b, {static_cast<int32_t>(rank), resolved[rank].merged});
  }
  find_word_boundaries();
}

// One symbol per character; unknown characters as bytes, the unknown token, or an error.
void BpeModel::add_symbols(std::string_view piece, std::vector<int32_t>& symbols) const {
  bool pending_unk = false;
  for (size_t pos = 0; pos < piece.size();) {
    const size_t start = pos;
    next_code_point(piece, pos);
    const std::string_view ch = piece.substr(start, pos - start);
    if (const auto id = vocab_.find(ch)) {
      if (pending_unk) symbols.push_back(unk_id_);
      pending_unk = false;
      symbols.push_back(*id);
      continue;
    }
    if (options_.byte_fallback &&
        std::all_of(ch.begin(), ch.end(), [&](char c) { return byte_ids_[static_cast<uint8_t>(c)] >= 0; })) {
      for (char c : ch) symbols.push_back(byte_ids_[static_cast<uint8_t>(c)]);
      continue;
    }
    if (unk_id_ < 0) fail("character '{}' is not in the BPE vocabulary, which has no unknown token", ch);
    if (pending_unk && !options_.fuse_unk) symbols.push_back(unk_id_);
    pending_unk = true;
  }
  if (pending_unk) symbols.push_back(unk_id_);
}

namespace {

constexpr std::string_view kMetaspace = "\xE2\x96\x81";  // ▁ U+2581
constexpr size_t kCachedWordBytes = 64;                  // longer words are merged every time
constexpr size_t kCacheWords = 1 << 15;                  // a thread's cache starts over when this full

std::atomic<uint64_t> next_instance{1};

// Words to their ids, per thread (no locking) and per model instance.
struct WordCache {
  uint64_t instance = 0;
  std::unordered_map<std::string, std::vector<int32_t>> words;
};
thread_local WordCache word_cache;

}  // namespace

void BpeModel::find_word_boundaries() {
  instance_ = next_instance++;
  if (options_.ignore_merges) return;  // a whole piece may be one token: pieces stay whole
  bool has_metaspace = false;
  vocab_.for_each([&](std::string_view token, int32_t) {
    for (size_t at = token.find(kMetaspace); at != std::string_view::npos; at = token.find(kMetaspace, at + 1)) {
      has_metaspace = true;
      if (at == 0) continue;
      const char32_t before = code_point_before(token, at);
      if (before != U'\u2581') joins_metaspace_.push_back(before);
    }
  });
  std::sort(joins_metaspace_.begin(), joins_metaspace_.end());
  joins_metaspace_.erase(std::unique(joins_metaspace_.begin(), joins_metaspace_.end()), joins_metaspace_.end());
  split_words_ = has_metaspace;
}

void BpeModel::encode(std::string_view piece, std::vector<int32_t>& out) const {
  if (piece.empty()) return;
  if (options_.ignore_merges) {
    if (const auto id = vocab_.find(piece)) {
      out.push_back(*id);
      return;
    }
  }
  if (!split_words_) return encode_word(piece, out);
  size_t start = 0;
  for (size_t at = piece.find(kMetaspace, 1); at != std::string_view::npos; at = piece.find(kMetaspace, at + 1)) {
    const size_t before_start = previous_code_point_start(piece, at);
    const char32_t before = code_point_before(piece, at);
    if (before == U'\u2581' || std::binary_search(joins_metaspace_.begin(), joins_metaspace_.end(), before)) continue;
    // A character spelled by byte tokens or the unknown token is not in the vocabulary; keep it
    // with what follows rather than reason about merges of those.
    if (!vocab_.find(piece.substr(before_start, at - before_start))) continue;
    encode_word(piece.substr(start, at - start), out);
    start = at;
  }
  encode_word(piece.substr(start), out);
}

void BpeModel::encode_word(std::string_view word, std::vector<int32_t>& out) const {
  if (word.size() > kCachedWordBytes) return merge(word, out);
  WordCache& cache = word_cache;
  if (cache.instance != instance_ || cache.words.size() >= kCacheWords) {
    cache.words.clear();
    cache.instance = instance_;
  }
  auto [it, inserted] = cache.words.try_emplace(std::string(word));
  if (inserted) {
    try {
      merge(word, it->second);
    } catch (...) {
      cache.words.erase(it);
      throw;
    }
  }
  out.insert(out.end(), it->second.begin(), it->second.end());
}

void BpeModel::merge(std::string_view piece, std::vector<int32_t>& out) const {
  // Scratch space reused across calls: most pieces are a few characters, and allocating for each
  // would cost more than merging them.
  struct Symbol {
    int32_t id;  // -1 once merged into its left neighbour
    int prev, next;
  };
  struct Candidate {  // a merge of the symbol at `left` with its right neighbour
    int32_t rank;
    int left;
    int32_t left_id, right_id, merged;
    bool operator>(const Candidate& o) const { return rank != o.rank ? rank > o.rank : left > o.left; }
  };
  thread_local std::vector<int32_t> ids;
  thread_local std::vector<Symbol> symbols;
  thread_local std::vector<Candidate> queue;  // a min-heap: lowest rank first, leftmost among equals
  ids.clear();
  add_symbols(piece, ids);
  if (ids.size() <= 1) {
    out.insert(out.end(), ids.begin(), ids.end());
    return;
  }
  symbols.clear();
  for (size_t i = 0; i < ids.size(); ++i) symbols.push_back({ids[i], static_cast<int>(i) - 1, static_cast<int>(i) + 1});
  symbols.back().next = -1;
  queue.clear();
  auto consider = [&](int left) {
    if (left < 0 || symbols[static_cast<size_t>(left)].next < 0) return;
    const int32_t a = symbols[static_cast<size_t>(left)].id;
    const int32_t b = symbols[static_cast<size_t>(symbols[static_cast<size_t>(left)].next)].id;
    if (const MergeTable::Merge* m = merges_.find(a, b)) {
      queue.push_back({m->rank, left, a, b, m->merged});
      std::push_heap(queue.begin(), queue.end(), std::greater<>());
    }
  };
  for (int i = 0; i + 1 < static_cast<int>(symbols.size()); ++i) consider(i);
  while (!queue.empty()) {
    std::pop_heap(queue.begin(), queue.end(), std::greater<>());
    const Candidate c = queue.back();
    queue.pop_back();
    Symbol& left = symbols[static_cast<size_t>(c.left)];
    // Stale: one side was merged into something else since this candidate was queued.
    if (left.id != c.left_id || left.next < 0 || symbols[static_cast<size_t>(left.next)].id != c.right_id) continue;
    Symbol& right = symbols[static_cast<size_t>(left.next)];
    left.id = c.merged;
    right.id = -1;
    left.next = right.next;
    if (right.next >= 0) symbols[static_cast<size_t>(right.next)].prev = c.left;
    consider(left.prev);
    consider(c.left);
  }
  for (int i = 0; i >= 0; i = symbols[static_cast<size_t>(i)].next) out.push_back(symbols[static_cast<size_t>(i)].id);
}

}  // namespace nanoserve
