#include "model/transformer.h"

#include <fmt/format.h>

#include <algorithm>
#include <numeric>

#include "backend/cpu/ops.h"
#include "util/error.h"

namespace nanoserve {

KvCache::KvCache(const ModelConfig& c, int64_t capacity)
    : capacity_(capacity), row_width_(c.kv_heads * c.head_dim) {
  const size_t n = static_cast<size_t>(capacity * row_width_);
  keys_.assign(static_cast<size_t>(c.layers), std::vector<float>(n));
  values_.assign(static_cast<size_t>(c.layers), std::vector<float>(n));
}

struct Transformer::Step {
  int64_t tokens, first;           // this call's tokens start at position `first`
  std::vector<int64_t> positions;  // [tokens]
  RopeFrequencies rope, local_rope;
  const ActivationSink* sink;

  void emit(const std::string& name, const float* data, int64_t cols) const {
    if (sink) (*sink)(name, data, tokens, cols);
  }
};

Transformer::Transformer(const Model& model) : model_(model) {}

void Transformer::embed(const Step& step, std::span<const int32_t> token_ids, float* x) const {
  const ArchSpec& a = model_.arch;
  const int64_t hidden = model_.config.hidden_size, n = step.tokens * hidden;
  cpu::embed(model_.weights.embed, token_ids, x);
  if (a.embed_scale != 1.0f) cpu::scale(x, a.embed_scale, n);
  if (!a.rope) {
    const TensorView& table = model_.weights.position_embed;
    std::vector<float> row(static_cast<size_t>(hidden));
    for (int64_t t = 0; t < step.tokens; ++t) {
      if (step.positions[static_cast<size_t>(t)] >= table.shape[0]) {
        fail("position {} is past the {} learned positions of this model", step.positions[static_cast<size_t>(t)], table.shape[0]);
      }
      cpu::load_row(table, step.positions[static_cast<size_t>(t)], row.data());
      cpu::add(x + t * hidden, row.data(), hidden);
    }
  }
}

// q [tokens, heads * head_dim]; k, v [tokens, kv_heads * head_dim], after biases, norms, clipping and RoPE.
void Transformer::project_qkv(const Step& step, int64_t layer, const float* normed, float* q, float* k, float* v) const {
  const ModelConfig& c = model_.config;
  const ArchSpec& a = model_.arch;
  const LayerWeights& w = model_.weights.layers[static_cast<size_t>(layer)];
  const int64_t tokens = step.tokens, q_dim = c.heads * c.head_dim, kv_dim = c.kv_heads * c.head_dim;
  cpu::linear(normed, tokens, w.q, q);
  cpu::linear(normed, tokens, w.k, k);
  cpu::linear(normed, tokens, w.v, v);
  if (a.qk_norm == QkNorm::PerHead) {
    cpu::norm(a.norm, q, w.q_norm, tokens * c.heads, c.head_dim, c.norm_eps, q);
    cpu::norm(a.norm, k, w.k_norm, tokens * c.kv_heads, c.head_dim, c.norm_eps, k);
  } else if (a.qk_norm == QkNorm::Full) {
    cpu::norm(a.norm, q, w.q_norm, tokens, q_dim, c.norm_eps, q);
    cpu::norm(a.norm, k, w.k_norm, tokens, kv_dim, c.norm_eps, k);
  }
  if (a.clip_qkv > 0) {
    cpu::clamp(q, a.clip_qkv, tokens * q_dim);
    cpu::clamp(k, a.clip_qkv, tokens * kv_dim);
    cpu::clamp(v, a.clip_qkv, tokens * kv_dim);
  }
  if (a.rope) {
    const RopeFrequencies& freqs = a.layers[static_cast<size_t>(layer)].local_rope ? step.local_rope : step.rope;
    apply_rope(q, tokens, c.heads, c.head_dim, step.positions.data(), freqs);
    apply_rope(k, tokens, c.kv_heads, c.head_dim, step.positions.data(), freqs);
  }
  if (layer == 0) {
    step.emit("layer0.q_rope", q, q_dim);
    step.emit("layer0.k_rope", k, kv_dim);
  }
}

void Transformer::attention_block(const Step& step, int64_t layer, const float* normed, KvCache& cache,
                                  float* out) const {
  const ModelConfig& c = model_.config;
  const ArchSpec& a = model_.arch;
  const int64_t tokens = step.tokens, q_dim = c.heads * c.head_dim, kv_dim = c.kv_heads * c.head_dim;
  std::vector<float> q(static_cast<size_t>(tokens * q_dim));  // [tokens, heads * head_dim]
  float* k = cache.keys(layer) + step.first * kv_dim;           // [tokens, kv_heads * head_dim], in the cache
  float* v = cache.values(layer) + step.first * kv_dim;
  project_qkv(step, layer, normed, q.data(), k, v);

  cpu::AttentionParams params{c.heads, c.kv_heads, c.head_dim, a.attn_scale, a.attn_softcap,
                              a.layers[static_cast<size_t>(layer)].sliding_window};
  if (a.attn_scale_by_layer) params.scale /= static_cast<float>(layer + 1);
  std::vector<float> attn(static_cast<size_t>(tokens * q_dim));  // [tokens, heads * head_dim]
  cpu::attention(q.data(), tokens, step.first, cache.keys(layer), cache.values(layer), params, attn.data());
  cpu::linear(attn.data(), tokens, model_.weights.layers[static_cast<size_t>(layer)].o, out);
}

void Transformer::mlp_block(int64_t layer, const float* normed, int64_t tokens, float* out) const {
  const ModelConfig& c = model_.config;
  const ArchSpec& a = model_.arch;
  const LayerWeights& w = model_.weights.layers[static_cast<size_t>(layer)];
  const int64_t n = tokens * c.intermediate_size;
  std::vector<float> up(static_cast<size_t>(n));  // [tokens, intermediate]
  cpu::linear(normed, tokens, w.up, up.data());
  if (a.mlp == MlpKind::Plain) {
    cpu::activate(a.activation, up.data(), n);
    cpu::linear(up.data(), tokens, w.down, out);
    return;
  }
  std::vector<float> gate(static_cast<size_t>(n));  // [tokens, intermediate]
  cpu::linear(normed, tokens, w.gate, gate.data());
  cpu::act_mul(a.activation, gate.data(), up.data(), n);
  cpu::linear(gate.data(), tokens, w.down, out);
}

// Each token goes to its top_k experts by router probability (softmax in float32, as HF does);
// experts run on the rows routed to them and their outputs are summed with the probabilities as
// weights, in expert order.
void Transformer::moe_block(int64_t layer, const float* normed, int64_t tokens, float* out) const {
  const ModelConfig& c = model_.config;
  const MoeSpec& moe = model_.arch.moe;
  const LayerWeights& w = model_.weights.layers[static_cast<size_t>(layer)];
  const int64_t hidden = c.hidden_size, experts = moe.experts;
  std::vector<float> probs(static_cast<size_t>(tokens * experts));  // [tokens, experts]
  cpu::linear(normed, tokens, w.router, probs.data());
  std::vector<std::vector<std::pair<int64_t, float>>> routed(static_cast<size_t>(experts));  // expert -> (token, weight)
  for (int64_t t = 0; t < tokens; ++t) {
    float* p = probs.data() + t * experts;
    const float max_logit = *std::max_element(p, p + experts);
    float sum = 0;
    for (int64_t e = 0; e < experts; ++e) sum += (p[e] = std::exp(p[e] - max_logit));
    for (int64_t e = 0; e < experts; ++e) p[e] /= sum;
    std::vector<int64_t> order(static_cast<size_t>(experts));
    std::iota(order.begin(), order.end(), 0);
    std::stable_sort(order.begin(), order.end(), [&](int64_t x, int64_t y) { return p[x] > p[y]; });
    float top_sum = 0;
    for (int64_t i = 0; i < moe.top_k; ++i) top_sum += p[order[static_cast<size_t>(i)]];
    for (int64_t i = 0; i < moe.top_k; ++i) {
      const int64_t e = order[static_cast<size_t>(i)];
      routed[static_cast<size_t>(e)].push_back({t, moe.norm_topk_prob ? p[e] / top_sum : p[e]});
    }
  }
  std::fill(out, out + tokens * hidden, 0.0f);
  std::vector<float> rows, gate, up, down;
  for (int64_t e = 0; e < experts; ++e) {
    const auto& picks = routed[static_cast<size_t>(e)];
    if (picks.empty()) continue;
    const auto n = static_cast<int64_t>(picks.size());
    const Expert& x = w.experts[static_cast<size_t>(e)];
    rows.resize(static_cast<size_t>(n * hidden));  // [n, hidden]: the tokens routed here
    for (int64_t i = 0; i < n; ++i) {
      std::copy_n(normed + picks[static_cast<size_t>(i)].first * hidden, hidden, rows.data() + i * hidden);
    }
    gate.resize(static_cast<size_t>(n * c.intermediate_size));  // [n, intermediate]
    up.resize(gate.size());
    down.resize(rows.size());  // [n, hidden]
    cpu::linear(rows.data(), n, x.gate, gate.data());
    cpu::linear(rows.data(), n, x.up, up.data());
    cpu::act_mul(model_.arch.activation, gate.data(), up.data(), n * c.intermediate_size);
    cpu::linear(gate.data(), n, x.down, down.data());
    for (int64_t i = 0; i < n; ++i) {
      const auto [t, weight] = picks[static_cast<size_t>(i)];
      for (int64_t j = 0; j < hidden; ++j) out[t * hidden + j] += weight * down[static_cast<size_t>(i * hidden + j)];
    }
  }
}

std::vector<float> Transformer::forward(std::span<const int32_t> token_ids, KvCache& cache, LogitsFor which,
                                        const ActivationSink* sink) const {
  const ModelConfig& c = model_.config;
  const ArchSpec& a = model_.arch;
  const Weights& w = model_.weights;
  const int64_t tokens = static_cast<int64_t>(token_ids.size()), hidden = c.hidden_size;
  if (tokens == 0) fail("forward needs at least one token");
  if (cache.length() + tokens > cache.capacity()) {
    fail("sequence of {} tokens exceeds the KV cache capacity of {}", cache.length() + tokens, cache.capacity());
  }
  Step step{tokens, cache.length(), std::vector<int64_t>(static_cast<size_t>(tokens)), {}, {}, sink};
  std::iota(step.positions.begin(), step.positions.end(), step.first);
  const int64_t seq_len = step.first + tokens;
  if (a.rope) step.rope = rope_frequencies(c.rope, c.head_dim, c.max_positions, seq_len);
  if (a.local_rope) step.local_rope = rope_frequencies(*a.local_rope, c.head_dim, c.max_positions, seq_len);

  std::vector<float> x(static_cast<size_t>(tokens * hidden));  // [tokens, hidden]: the residual stream
  std::vector<float> normed(x.size()), branch(x.size());       // [tokens, hidden]
  embed(step, token_ids, x.data());
  step.emit("embed", x.data(), hidden);
  for (int64_t l = 0; l < c.layers; ++l) {
    const LayerWeights& lw = w.layers[static_cast<size_t>(l)];
    cpu::norm(a.norm, x.data(), lw.attn_norm, tokens, hidden, c.norm_eps, normed.data());
    if (l == 0) step.emit("layer0.input_norm", normed.data(), hidden);
    attention_block(step, l, normed.data(), cache, branch.data());
    step.emit(fmt::format("layer{}.attn_out", l), branch.data(), hidden);
    if (a.post_norms) cpu::norm(a.norm, branch.data(), lw.post_attn_norm, tokens, hidden, c.norm_eps, branch.data());
    cpu::add(x.data(), branch.data(), tokens * hidden);
    cpu::norm(a.norm, x.data(), lw.mlp_norm, tokens, hidden, c.norm_eps, normed.data());
    if (a.mlp == MlpKind::Moe) {
      moe_block(l, normed.data(), tokens, branch.data());
    } else {
      mlp_block(l, normed.data(), tokens, branch.data());
    }
    step.emit(fmt::format("layer{}.mlp_out", l), branch.data(), hidden);
    if (a.post_norms) cpu::norm(a.norm, branch.data(), lw.post_mlp_norm, tokens, hidden, c.norm_eps, branch.data());
    cpu::add(x.data(), branch.data(), tokens * hidden);
    step.emit(fmt::format("layer{}.out", l), x.data(), hidden);
  }
  cache.advance(tokens);

  const int64_t first_row = which == LogitsFor::LastToken ? tokens - 1 : 0, rows = tokens - first_row;
  cpu::norm(a.norm, x.data() + first_row * hidden, w.final_norm, rows, hidden, c.norm_eps, normed.data());
  if (which == LogitsFor::AllTokens) step.emit("final_norm", normed.data(), hidden);
  std::vector<float> logits(static_cast<size_t>(rows * c.vocab_size));  // [rows, vocab]
  cpu::linear(normed.data(), rows, {w.lm_head, {}, false}, logits.data());
  if (a.final_softcap > 0) cpu::softcap(logits.data(), a.final_softcap, static_cast<int64_t>(logits.size()));
  return logits;
}

}  // namespace nanoserve
