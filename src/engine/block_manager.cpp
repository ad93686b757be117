#include "engine/block_manager.h"

#include <algorithm>

#include "util/error.h"

namespace nanoserve {

BlockManager::BlockManager(int64_t num_blocks, int64_t block_size, bool prefix_caching)
    : block_size_(block_size), prefix_caching_(prefix_caching), blocks_(static_cast<size_t>(num_blocks)) {
  for (int64_t b = num_blocks - 1; b >= 0; --b) free_.push_back(static_cast<int32_t>(b));
}

int64_t BlockManager::available_blocks() const { return static_cast<int64_t>(free_.size() + evictable_.size()); }

std::optional<int32_t> BlockManager::allocate() {
  int32_t b;
  if (!free_.empty()) {
    b = free_.back();
    free_.pop_back();
  } else if (!evictable_.empty()) {
    b = evictable_.front();  // the least recently used cached block
    evictable_.pop_front();
    unpublish(b);
  } else {
    return std::nullopt;
  }
  blocks_[static_cast<size_t>(b)].refs = 1;
  return b;
}

void BlockManager::retain(int32_t block) {
  Block& b = blocks_[static_cast<size_t>(block)];
  if (b.refs == 0 && b.published) evictable_.erase(b.lru);
  ++b.refs;
}

void BlockManager::release(int32_t block) {
  Block& b = blocks_[static_cast<size_t>(block)];
  if (b.refs <= 0) fail("internal: KV block {} released more often than held", block);
  if (--b.refs > 0) return;
  if (b.published) {
    b.lru = evictable_.insert(evictable_.end(), block);
  } else {
    free_.push_back(block);
  }
}

uint64_t BlockManager::hash(uint64_t parent, std::span<const int32_t> tokens) {
  // splitmix64 over the parent hash and each token: cheap, well mixed; lookups also compare tokens.
  uint64_t h = parent ^ 0x9e3779b97f4a7c15ull;
  for (int32_t t : tokens) {
    h += static_cast<uint64_t>(static_cast<uint32_t>(t)) + 0x9e3779b97f4a7c15ull;
    h = (h ^ (h >> 30)) * 0xbf58476d1ce4e5b9ull;
    h = (h ^ (h >> 27)) * 0x94d049bb133111ebull;
    h ^= h >> 31;
  }
  return h;
}

std::optional<int32_t> BlockManager::lookup(uint64_t hash, std::span<const int32_t> tokens) {
  if (!prefix_caching_) return std::nullopt;
  ++queries_;
  auto it = published_.find(hash);
  if (it == published_.end()) return std::nullopt;
  const Block& b = blocks_[static_cast<size_t>(it->second)];
  if (!std::equal(tokens.begin(), tokens.end(), b.tokens.begin(), b.tokens.end())) return std::nullopt;
  ++hits_;
  retain(it->second);
  return it->second;
}

void BlockManager::publish(int32_t block, uint64_t hash, std::span<const int32_t> tokens) {
  if (!prefix_caching_) return;
  Block& b = blocks_[static_cast<size_t>(block)];
  if (b.published || published_.count(hash)) return;  // the first block with this content stays the cached one
  b.published = true;
  b.hash = hash;
  b.tokens.assign(tokens.begin(), tokens.end());
  published_[hash] = block;
}

void BlockManager::unpublish(int32_t block) {
  Block& b = blocks_[static_cast<size_t>(block)];
  published_.erase(b.hash);
  b.published = false;
  b.tokens.clear();
}

}  // namespace nanoserve
