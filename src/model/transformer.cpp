#include "model/transformer.h"

#include <fmt/format.h>

#include <algorithm>
#include <numeric>

#include "backend/cpu/ops.h"
#include "util/error.h"

namespace nanoserve {

struct Transformer::Batch {
  struct Sequence {
    int64_t offset, count, first;  // its tokens are rows [offset, offset + count), at positions first..
    std::span<const int32_t> blocks;
    RopeFrequencies rope, local_rope;
  };
  int64_t tokens = 0;
  std::vector<int64_t> positions;  // [tokens]
  std::vector<Sequence> sequences;
  const ActivationSink* sink = nullptr;

  void emit(const std::string& name, const float* data, int64_t cols) const {
    if (sink) (*sink)(name, data, tokens, cols);
  }
};

void Transformer::embed(const Batch& step, std::span<const int32_t> token_ids, float* x) const {
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
void Transformer::project_qkv(const Batch& step, int64_t layer, const float* normed, float* q, float* k, float* v) const {
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
    const bool local = a.layers[static_cast<size_t>(layer)].local_rope;
    for (const auto& s : step.sequences) {
      const RopeFrequencies& freqs = local ? s.local_rope : s.rope;
      const int64_t* positions = step.positions.data() + s.offset;
      apply_rope(q + s.offset * q_dim, s.count, c.heads, c.head_dim, positions, freqs, a.rope_pairs);
      apply_rope(k + s.offset * kv_dim, s.count, c.kv_heads, c.head_dim, positions, freqs, a.rope_pairs);
    }
  }
  if (layer == 0) {
    step.emit("layer0.q_rope", q, q_dim);
    step.emit("layer0.k_rope", k, kv_dim);
  }
}

void Transformer::attention_block(const Batch& batch, int64_t layer, const float* normed, KvCache& cache,
                                  float* out) const {
  const ModelConfig& c = model_.config;
  const ArchSpec& a = model_.arch;
  const int64_t tokens = batch.tokens, q_dim = c.heads * c.head_dim, kv_dim = c.kv_heads * c.head_dim;
  const int64_t block_size = cache.block_size();
  std::vector<float> q(static_cast<size_t>(tokens * q_dim));  // [tokens, heads * head_dim]
  std::vector<float> k(static_cast<size_t>(tokens * kv_dim)), v(k.size());  // [tokens, kv_heads * head_dim]
  project_qkv(batch, layer, normed, q.data(), k.data(), v.data());

  cpu::AttentionParams params{c.heads, c.kv_heads, c.head_dim, a.attn_scale, a.attn_softcap,
                              a.layers[static_cast<size_t>(layer)].sliding_window};
  if (a.attn_scale_by_layer) params.scale /= static_cast<float>(layer + 1);
  std::vector<float> attn(static_cast<size_t>(tokens * q_dim));  // [tokens, heads * head_dim]
  std::vector<const float*> k_rows, v_rows;                      // [positions]: rows through the block table
  std::vector<float> k_scratch, v_scratch;  // [positions, kv_dim]: dequantized rows of a quantized cache
  for (const auto& s : batch.sequences) {
    const int64_t end = s.first + s.count;
    k_rows.resize(static_cast<size_t>(end));
    v_rows.resize(static_cast<size_t>(end));
    if (cache.dtype() != KvDType::F32) {
      k_scratch.resize(static_cast<size_t>(end * kv_dim));
      v_scratch.resize(k_scratch.size());
    }
    for (int64_t p = 0; p < end; ++p) {
      const int32_t block = s.blocks[static_cast<size_t>(p / block_size)];
      if (p >= s.first) {  // a new token: store its key and value
        const int64_t row = (s.offset + p - s.first) * kv_dim;
        cache.write(layer, block, p % block_size, k.data() + row, v.data() + row);
      }
      float* k_buf = k_scratch.empty() ? nullptr : k_scratch.data() + p * kv_dim;
      float* v_buf = v_scratch.empty() ? nullptr : v_scratch.data() + p * kv_dim;
      k_rows[static_cast<size_t>(p)] = cache.key(layer, block, p % block_size, k_buf);
      v_rows[static_cast<size_t>(p)] = cache.value(layer, block, p % block_size, v_buf);
    }
    cpu::attention(q.data() + s.offset * q_dim, s.count, s.first, k_rows.data(), v_rows.data(), params,
                   attn.data() + s.offset * q_dim);
  }
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

std::vector<float> Transformer::forward(std::span<const SequenceSlice> slices, KvCache& cache,
                                        const ActivationSink* sink) const {
  const ModelConfig& c = model_.config;
  const ArchSpec& a = model_.arch;
  const Weights& w = model_.weights;
  const int64_t hidden = c.hidden_size;
  Batch batch;
  batch.sink = sink;
  std::vector<int32_t> token_ids;
  for (const auto& slice : slices) {
    const auto count = static_cast<int64_t>(slice.tokens.size());
    if (count == 0) fail("forward needs at least one token per sequence");
    const int64_t end = slice.first_pos + count;
    if (end > static_cast<int64_t>(slice.blocks.size()) * cache.block_size()) {
      fail("sequence of {} tokens exceeds its {} KV blocks of {}", end, slice.blocks.size(), cache.block_size());
    }
    Batch::Sequence s{batch.tokens, count, slice.first_pos, slice.blocks, {}, {}};
    if (a.rope) s.rope = rope_frequencies(c.rope, c.head_dim, c.max_positions, end);
    if (a.local_rope) s.local_rope = rope_frequencies(*a.local_rope, c.head_dim, c.max_positions, end);
    batch.sequences.push_back(std::move(s));
    for (int64_t p = slice.first_pos; p < end; ++p) batch.positions.push_back(p);
    token_ids.insert(token_ids.end(), slice.tokens.begin(), slice.tokens.end());
    batch.tokens += count;
  }
  const int64_t tokens = batch.tokens;

  std::vector<float> x(static_cast<size_t>(tokens * hidden));  // [tokens, hidden]: the residual stream
  std::vector<float> normed(x.size()), branch(x.size());       // [tokens, hidden]
  embed(batch, token_ids, x.data());
  batch.emit("embed", x.data(), hidden);
  for (int64_t l = 0; l < c.layers; ++l) {
    const LayerWeights& lw = w.layers[static_cast<size_t>(l)];
    cpu::norm(a.norm, x.data(), lw.attn_norm, tokens, hidden, c.norm_eps, normed.data());
    if (l == 0) batch.emit("layer0.input_norm", normed.data(), hidden);
    attention_block(batch, l, normed.data(), cache, branch.data());
    batch.emit(fmt::format("layer{}.attn_out", l), branch.data(), hidden);
    if (a.post_norms) cpu::norm(a.norm, branch.data(), lw.post_attn_norm, tokens, hidden, c.norm_eps, branch.data());
    cpu::add(x.data(), branch.data(), tokens * hidden);
    cpu::norm(a.norm, x.data(), lw.mlp_norm, tokens, hidden, c.norm_eps, normed.data());
    if (a.mlp == MlpKind::Moe) {
      moe_block(l, normed.data(), tokens, branch.data());
    } else {
      mlp_block(l, normed.data(), tokens, branch.data());
    }
    batch.emit(fmt::format("layer{}.mlp_out", l), branch.data(), hidden);
    if (a.post_norms) cpu::norm(a.norm, branch.data(), lw.post_mlp_norm, tokens, hidden, c.norm_eps, branch.data());
    cpu::add(x.data(), branch.data(), tokens * hidden);
    batch.emit(fmt::format("layer{}.out", l), x.data(), hidden);
  }

  // Only the rows that want logits go through the final norm and the LM head.
  std::vector<float> rows;
  for (size_t i = 0; i < slices.size(); ++i) {
    const auto& s = batch.sequences[i];
    const int64_t first = slices[i].logits == LogitsFor::AllTokens ? 0 : s.count - 1;
    if (slices[i].logits == LogitsFor::None) continue;
    rows.insert(rows.end(), x.begin() + (s.offset + first) * hidden, x.begin() + (s.offset + s.count) * hidden);
  }
  const int64_t n = static_cast<int64_t>(rows.size()) / hidden;
  if (n == 0) return {};
  cpu::norm(a.norm, rows.data(), w.final_norm, n, hidden, c.norm_eps, rows.data());
  if (n == tokens) batch.emit("final_norm", rows.data(), hidden);
  std::vector<float> logits(static_cast<size_t>(n * c.vocab_size));  // [n, vocab]
  cpu::linear(rows.data(), n, {w.lm_head, {}, false}, logits.data());
  if (a.final_softcap > 0) cpu::softcap(logits.data(), a.final_softcap, static_cast<int64_t>(logits.size()));
  return logits;
}

std::vector<float> Transformer::forward(std::span<const int32_t> tokens, SequenceCache& cache, LogitsFor which,
                                        const ActivationSink* sink) const {
  if (cache.length() + static_cast<int64_t>(tokens.size()) > cache.capacity()) {
    fail("sequence of {} tokens exceeds the KV cache capacity of {}", cache.length() + tokens.size(), cache.capacity());
  }
  const SequenceSlice slice{tokens, cache.length(), cache.blocks(), which};
  auto logits = forward(std::span(&slice, 1), cache.cache(), sink);
  cache.advance(static_cast<int64_t>(tokens.size()));
  return logits;
}

}  // namespace nanoserve
