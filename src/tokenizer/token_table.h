// A vocabulary: token strings to ids. The strings live in one arena and the index is open
// addressing with the hash kept beside each slot, so loading a 128k vocabulary is a few
// allocations and a lookup is one or two slot reads and one compare, not a chain of nodes.
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace nanoserve {

class TokenTable {
 public:
  void reserve(size_t count, size_t bytes) {
    arena_.reserve(bytes);
    entries_.reserve(count);
    rehash(count);
  }

  // A token listed twice keeps its last id, as a JSON object read into a map does.
  void insert(std::string_view token, int32_t id) {
    if (2 * (entries_.size() + 1) > slots_.size()) rehash(2 * (entries_.size() + 1));
    const uint64_t h = hash(token);
    size_t i = h & mask_;
    for (; slots_[i] >= 0; i = (i + 1) & mask_) {
      Entry& e = entries_[static_cast<size_t>(slots_[i])];
      if (e.hash == h && text(e) == token) {
        e.id = id;
        return;
      }
    }
    slots_[i] = static_cast<int32_t>(entries_.size());
    entries_.push_back({h, arena_.size(), token.size(), id});
    arena_.append(token);
  }

  std::optional<int32_t> find(std::string_view token) const {
    if (slots_.empty()) return std::nullopt;
    const uint64_t h = hash(token);
    for (size_t i = h & mask_; slots_[i] >= 0; i = (i + 1) & mask_) {
      const Entry& e = entries_[static_cast<size_t>(slots_[i])];
      if (e.hash == h && text(e) == token) return e.id;
    }
    return std::nullopt;
  }

  size_t size() const { return entries_.size(); }
  template <typename Fn>  // fn(std::string_view token, int32_t id)
  void for_each(Fn&& fn) const {
    for (const Entry& e : entries_) fn(text(e), e.id);
  }

 private:
  struct Entry {
    uint64_t hash;
    size_t offset, length;  // in arena_
    int32_t id;
  };
  static uint64_t hash(std::string_view s) { return std::hash<std::string_view>{}(s); }
  std::string_view text(const Entry& e) const { return std::string_view(arena_).substr(e.offset, e.length); }
  void rehash(size_t count) {
    size_t capacity = 16;
    while (capacity < 2 * count) capacity *= 2;
    if (capacity <= slots_.size()) return;
    slots_.assign(capacity, -1);
    mask_ = capacity - 1;
    for (size_t n = 0; n < entries_.size(); ++n) {
      size_t i = entries_[n].hash & mask_;
      while (slots_[i] >= 0) i = (i + 1) & mask_;
      slots_[i] = static_cast<int32_t>(n);
    }
  }

  std::string arena_;
  std::vector<Entry> entries_;
  std::vector<int32_t> slots_;  // index into entries_, -1 when empty
  size_t mask_ = 0;
};

}  // namespace nanoserve
