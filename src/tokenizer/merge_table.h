// BPE merges keyed by the pair of token ids they join: open addressing with linear probing, so a
// lookup reads one or two adjacent slots where std::unordered_map chases a node pointer (the merge
// lookup is most of BPE's time on a 262k vocabulary).
#pragma once

#include <cstdint>
#include <vector>

namespace nanoserve {

class MergeTable {
 public:
  struct Merge {
    int32_t rank;
    int32_t merged;  // id of the joined token
  };

  void reserve(size_t count) {
    size_t capacity = 16;
    while (capacity < 2 * count) capacity *= 2;
    slots_.assign(capacity, Slot{kEmpty, {}});
    mask_ = capacity - 1;
  }

  // A pair listed twice keeps its last rank, as Hugging Face's map of merges does. Needs reserve().
  void insert(int32_t a, int32_t b, Merge merge) {
    const uint64_t key = pair_key(a, b);
    size_t i = hash(key) & mask_;
    while (slots_[i].key != kEmpty && slots_[i].key != key) i = (i + 1) & mask_;
    slots_[i] = {key, merge};
  }

  // Brings the pair's first slot into cache ahead of an insert: building a table of half a million
  // merges is otherwise one cache miss per merge.
  void prefetch(int32_t a, int32_t b) const { __builtin_prefetch(&slots_[hash(pair_key(a, b)) & mask_], 1); }

  const Merge* find(int32_t a, int32_t b) const {
    const uint64_t key = pair_key(a, b);
    for (size_t i = hash(key) & mask_;; i = (i + 1) & mask_) {
      if (slots_[i].key == key) return &slots_[i].merge;
      if (slots_[i].key == kEmpty) return nullptr;
    }
  }

 private:
  static constexpr uint64_t kEmpty = ~uint64_t{0};  // ids are non-negative, so no pair has this key
  struct Slot {
    uint64_t key;
    Merge merge;
  };
  static uint64_t pair_key(int32_t a, int32_t b) {
    return (static_cast<uint64_t>(static_cast<uint32_t>(a)) << 32) | static_cast<uint32_t>(b);
  }
  static size_t hash(uint64_t key) {  // a 64-bit finalizer: the low bits depend on every input bit
    key ^= key >> 33;
    key *= 0xff51afd7ed558ccdULL;
    key ^= key >> 33;
    return static_cast<size_t>(key);
  }

  std::vector<Slot> slots_;
  size_t mask_ = 0;
};

}  // namespace nanoserve
