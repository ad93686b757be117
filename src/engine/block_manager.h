// Who holds which KV block. Blocks are reference counted: forked samples (n > 1) and cached
// prefixes share them. A full block can be published under a hash chained over the token ids of
// all blocks before it; a later sequence with the same prefix reuses it. Unreferenced published
// blocks stay cached and are evicted least recently used first when the pool runs dry.
#pragma once

#include <cstdint>
#include <list>
#include <optional>
#include <span>
#include <unordered_map>
#include <vector>

namespace nanoserve {

class BlockManager {
 public:
  BlockManager(int64_t num_blocks, int64_t block_size, bool prefix_caching);

  int64_t total_blocks() const { return static_cast<int64_t>(blocks_.size()); }
  int64_t block_size() const { return block_size_; }
  int64_t available_blocks() const;  // free now: never used or cached but unreferenced
  int64_t used_blocks() const { return total_blocks() - available_blocks(); }

  std::optional<int32_t> allocate();  // a block with reference count 1, or nothing when the pool is dry
  void retain(int32_t block);
  void release(int32_t block);
  int32_t ref_count(int32_t block) const { return blocks_[static_cast<size_t>(block)].refs; }

  // Prefix cache. hash(parent, tokens) chains a block's tokens onto the hash of the blocks before it.
  static uint64_t hash(uint64_t parent, std::span<const int32_t> tokens);
  std::optional<int32_t> lookup(uint64_t hash, std::span<const int32_t> tokens);  // retains on a hit
  void publish(int32_t block, uint64_t hash, std::span<const int32_t> tokens);

  int64_t prefix_queries() const { return queries_; }
  int64_t prefix_hits() const { return hits_; }

 private:
  struct Block {
    int32_t refs = 0;
    bool published = false;
    uint64_t hash = 0;
    std::vector<int32_t> tokens;       // the published block's tokens, checked on lookup
    std::list<int32_t>::iterator lru;  // position in evictable_ when published and unreferenced
  };
  void unpublish(int32_t block);

  int64_t block_size_;
  bool prefix_caching_;
  std::vector<Block> blocks_;
  std::vector<int32_t> free_;                        // never published, unreferenced
  std::list<int32_t> evictable_;                     // published, unreferenced; oldest first
  std::unordered_map<uint64_t, int32_t> published_;  // hash -> block
  int64_t queries_ = 0, hits_ = 0;
};

}  // namespace nanoserve
