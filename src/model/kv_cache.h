// Paged key/value storage: fixed-size blocks of positions, shared by all sequences. A sequence
// owns a block table (block ids in position order); position p lives in block table[p / block_size]
// at slot p % block_size. Which sequence holds which block is the engine's business
// (engine/block_manager.h); this class only stores rows.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "model/config.h"

namespace nanoserve {

class KvCache {
 public:
  KvCache(const ModelConfig& config, int64_t num_blocks, int64_t block_size);

  // Bytes one block takes over all layers, keys and values (float32).
  static int64_t bytes_per_block(const ModelConfig& config, int64_t block_size);

  int64_t num_blocks() const { return num_blocks_; }
  int64_t block_size() const { return block_size_; }
  int64_t row_width() const { return row_width_; }  // kv_heads * head_dim

  float* key(int64_t layer, int32_t block, int64_t slot) { return row(keys_, layer, block, slot); }
  float* value(int64_t layer, int32_t block, int64_t slot) { return row(values_, layer, block, slot); }
  void copy_block(int32_t from, int32_t to);  // every layer, keys and values

 private:
  float* row(std::vector<std::vector<float>>& rows, int64_t layer, int32_t block, int64_t slot) {
    return rows[static_cast<size_t>(layer)].data() + (block * block_size_ + slot) * row_width_;
  }

  int64_t num_blocks_, block_size_, row_width_;
  std::vector<std::vector<float>> keys_, values_;  // [layers][num_blocks * block_size * row_width]
};

// One sequence in a private KvCache with blocks 0, 1, 2, ... in order: what the CLI's one-shot
// commands and the tests of the forward pass use.
class SequenceCache {
 public:
  SequenceCache(const ModelConfig& config, int64_t capacity, int64_t block_size = 16);

  int64_t length() const { return length_; }  // positions filled
  int64_t capacity() const { return static_cast<int64_t>(blocks_.size()) * cache_.block_size(); }
  void clear() { length_ = 0; }
  void advance(int64_t tokens) { length_ += tokens; }
  KvCache& cache() { return cache_; }
  std::span<const int32_t> blocks() const { return blocks_; }

 private:
  KvCache cache_;
  std::vector<int32_t> blocks_;
  int64_t length_ = 0;
};

}  // namespace nanoserve
