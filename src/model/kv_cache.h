// Keys and values of the positions a sequence has seen, per layer, so a new token attends to them
// without recomputing. Contiguous float32 storage for one sequence.
#pragma once

#include <cstdint>
#include <vector>

#include "model/config.h"

namespace nanoserve {

class KvCache {
 public:
  KvCache(const ModelConfig& config, int64_t capacity);

  int64_t length() const { return length_; }      // positions filled
  int64_t capacity() const { return capacity_; }
  int64_t row_width() const { return row_width_; }  // kv_heads * head_dim

  float* keys(int64_t layer) { return keys_[static_cast<size_t>(layer)].data(); }      // [capacity, row_width]
  float* values(int64_t layer) { return values_[static_cast<size_t>(layer)].data(); }  // [capacity, row_width]
  void advance(int64_t tokens) { length_ += tokens; }
  void clear() { length_ = 0; }

 private:
  int64_t capacity_, row_width_, length_ = 0;
  std::vector<std::vector<float>> keys_, values_;
};

}  // namespace nanoserve
