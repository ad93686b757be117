#include "model/kv_cache.h"

#include <algorithm>
#include <numeric>

namespace nanoserve {

KvCache::KvCache(const ModelConfig& c, int64_t num_blocks, int64_t block_size)
    : num_blocks_(num_blocks), block_size_(block_size), row_width_(c.kv_heads * c.head_dim) {
  const auto n = static_cast<size_t>(num_blocks * block_size * row_width_);
  keys_.assign(static_cast<size_t>(c.layers), std::vector<float>(n));
  values_.assign(static_cast<size_t>(c.layers), std::vector<float>(n));
}

int64_t KvCache::bytes_per_block(const ModelConfig& c, int64_t block_size) {
  return 2 * c.layers * block_size * c.kv_heads * c.head_dim * static_cast<int64_t>(sizeof(float));
}

void KvCache::copy_block(int32_t from, int32_t to) {
  const auto n = static_cast<size_t>(block_size_ * row_width_);
  for (auto* rows : {&keys_, &values_}) {
    for (auto& layer : *rows) {
      std::copy_n(layer.data() + from * static_cast<int64_t>(n), n, layer.data() + to * static_cast<int64_t>(n));
    }
  }
}

SequenceCache::SequenceCache(const ModelConfig& c, int64_t capacity, int64_t block_size)
    : cache_(c, (capacity + block_size - 1) / block_size, block_size),
      blocks_(static_cast<size_t>((capacity + block_size - 1) / block_size)) {
  std::iota(blocks_.begin(), blocks_.end(), 0);
}

}  // namespace nanoserve
