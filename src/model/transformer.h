// The forward pass of every decoder family: one implementation reading the ArchSpec, calling the
// backend's named operations.
#pragma once

#include <functional>
#include <span>
#include <string>
#include <vector>

#include "model/kv_cache.h"
#include "model/loader.h"
#include "model/rope.h"

namespace nanoserve {

// Receives named intermediate activations [rows, cols] (names as in tests/fixtures/README.md),
// for verification against reference implementations.
using ActivationSink = std::function<void(const std::string& name, const float* data, int64_t rows, int64_t cols)>;

enum class LogitsFor { LastToken, AllTokens };

class Transformer {
 public:
  explicit Transformer(const Model& model);

  // Runs `tokens` at positions cache.length() onwards, appends their keys and values to the cache,
  // and returns logits [1 or tokens, vocab]. Throws Error if the cache is full.
  std::vector<float> forward(std::span<const int32_t> tokens, KvCache& cache, LogitsFor which,
                             const ActivationSink* sink = nullptr) const;

  const ModelConfig& config() const { return model_.config; }
  KvCache new_cache(int64_t capacity) const { return KvCache(model_.config, capacity); }

 private:
  struct Step;  // per-forward state: positions, RoPE tables, sink
  void embed(const Step& step, std::span<const int32_t> tokens, float* x) const;
  void attention_block(const Step& step, int64_t layer, const float* normed, KvCache& cache, float* out) const;
  void project_qkv(const Step& step, int64_t layer, const float* normed, float* q, float* k, float* v) const;
  void mlp_block(int64_t layer, const float* normed, int64_t tokens, float* out) const;
  void moe_block(int64_t layer, const float* normed, int64_t tokens, float* out) const;

  const Model& model_;
};

}  // namespace nanoserve
