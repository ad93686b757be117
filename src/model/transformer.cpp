#include "model/transformer.h"

#include <fmt/format.h>

#include <numeric>

#include "backend/cpu/ops.h"
#include "model/rope.h"
#include "util/error.h"

namespace nanoserve {

KvCache::KvCache(const ModelConfig& c, int64_t capacity)
    : capacity_(capacity), row_width_(c.kv_heads * c.head_dim) {
  const size_t n = static_cast<size_t>(capacity * row_width_);
  keys_.assign(static_cast<size_t>(c.layers), std::vector<float>(n));
  values_.assign(static_cast<size_t>(c.layers), std::vector<float>(n));
}

Transformer::Transformer(const Model& model)
    : model_(model), inv_freq_(rope_inv_freq(model.config.rope, model.config.head_dim)) {}

void Transformer::attention_block(int64_t layer, const float* normed, int64_t tokens, KvCache& cache, float* out,
                                  const ActivationSink* sink) const {
  const ModelConfig& c = model_.config;
  const LayerWeights& w = model_.weights.layers[static_cast<size_t>(layer)];
  const int64_t q_dim = c.heads * c.head_dim, kv_dim = c.kv_heads * c.head_dim, first = cache.length();
  std::vector<int64_t> positions(static_cast<size_t>(tokens));
  std::iota(positions.begin(), positions.end(), first);

  std::vector<float> q(static_cast<size_t>(tokens * q_dim));  // [tokens, heads * head_dim]
  float* k = cache.keys(layer) + first * kv_dim;                // [tokens, kv_heads * head_dim], in the cache
  float* v = cache.values(layer) + first * kv_dim;
  cpu::matmul(normed, tokens, w.q, q.data());
  cpu::matmul(normed, tokens, w.k, k);
  cpu::matmul(normed, tokens, w.v, v);
  apply_rope(q.data(), tokens, c.heads, c.head_dim, positions.data(), inv_freq_);
  apply_rope(k, tokens, c.kv_heads, c.head_dim, positions.data(), inv_freq_);
  if (sink && layer == 0) {
    (*sink)("layer0.q_rope", q.data(), tokens, q_dim);
    (*sink)("layer0.k_rope", k, tokens, kv_dim);
  }
  std::vector<float> attn(static_cast<size_t>(tokens * q_dim));  // [tokens, heads * head_dim]
  cpu::attention(q.data(), tokens, first, cache.keys(layer), cache.values(layer),
                 {c.heads, c.kv_heads, c.head_dim}, attn.data());
  cpu::matmul(attn.data(), tokens, w.o, out);
}

void Transformer::mlp_block(int64_t layer, const float* normed, int64_t tokens, float* out) const {
  const ModelConfig& c = model_.config;
  const LayerWeights& w = model_.weights.layers[static_cast<size_t>(layer)];
  const int64_t n = tokens * c.intermediate_size;
  std::vector<float> gate(static_cast<size_t>(n)), up(static_cast<size_t>(n));  // [tokens, intermediate]
  cpu::matmul(normed, tokens, w.gate, gate.data());
  cpu::matmul(normed, tokens, w.up, up.data());
  cpu::silu_mul(gate.data(), up.data(), n);
  cpu::matmul(gate.data(), tokens, w.down, out);
}

std::vector<float> Transformer::forward(std::span<const int32_t> token_ids, KvCache& cache, LogitsFor which,
                                        const ActivationSink* sink) const {
  const ModelConfig& c = model_.config;
  const Weights& w = model_.weights;
  const int64_t tokens = static_cast<int64_t>(token_ids.size()), hidden = c.hidden_size;
  if (tokens == 0) fail("forward needs at least one token");
  if (cache.length() + tokens > cache.capacity()) {
    fail("sequence of {} tokens exceeds the KV cache capacity of {}", cache.length() + tokens, cache.capacity());
  }
  auto emit = [&](const std::string& name, const float* data, int64_t cols) {
    if (sink) (*sink)(name, data, tokens, cols);
  };

  std::vector<float> x(static_cast<size_t>(tokens * hidden));       // [tokens, hidden]: the residual stream
  std::vector<float> normed(x.size()), branch(x.size());            // [tokens, hidden]
  cpu::embed(w.embed, token_ids, x.data());
  emit("embed", x.data(), hidden);
  for (int64_t l = 0; l < c.layers; ++l) {
    const LayerWeights& lw = w.layers[static_cast<size_t>(l)];
    cpu::rms_norm(x.data(), lw.attn_norm, tokens, hidden, c.norm_eps, normed.data());
    if (l == 0) emit("layer0.input_norm", normed.data(), hidden);
    attention_block(l, normed.data(), tokens, cache, branch.data(), sink);
    emit(fmt::format("layer{}.attn_out", l), branch.data(), hidden);
    cpu::add(x.data(), branch.data(), tokens * hidden);
    cpu::rms_norm(x.data(), lw.mlp_norm, tokens, hidden, c.norm_eps, normed.data());
    mlp_block(l, normed.data(), tokens, branch.data());
    emit(fmt::format("layer{}.mlp_out", l), branch.data(), hidden);
    cpu::add(x.data(), branch.data(), tokens * hidden);
    emit(fmt::format("layer{}.out", l), x.data(), hidden);
  }
  cache.advance(tokens);

  const int64_t first_row = which == LogitsFor::LastToken ? tokens - 1 : 0, rows = tokens - first_row;
  cpu::rms_norm(x.data() + first_row * hidden, w.final_norm, rows, hidden, c.norm_eps, normed.data());
  if (which == LogitsFor::AllTokens) emit("final_norm", normed.data(), hidden);
  std::vector<float> logits(static_cast<size_t>(rows * c.vocab_size));  // [rows, vocab]
  cpu::matmul(normed.data(), rows, w.lm_head, logits.data());
  return logits;
}

}  // namespace nanoserve
