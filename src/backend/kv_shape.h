// What a KV cache holds per position: in every layer, kv_heads * head_dim keys and as many values.
// A model's config gives it (ModelConfig::kv_shape); a cache needs nothing else of the model.
#pragma once

#include <cstdint>

namespace nanoserve {

struct KvShape {
  int64_t layers = 0, kv_heads = 0, head_dim = 0;
  int64_t row_width() const { return kv_heads * head_dim; }
};

}  // namespace nanoserve
