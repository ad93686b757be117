#include "model/transformer.h"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <numeric>

#include "backend/cpu/cpu_backend.h"
#include "util/error.h"

namespace nanoserve {

struct Transformer::Batch {
  Step step;
  std::vector<int64_t> logit_rows;  // the rows whose logits the slices ask for, in order
  const ActivationSink* sink = nullptr;
  Backend* backend = nullptr;

  int64_t tokens() const { return step.layout().tokens; }
  // Hands a [tokens, cols] activation to the sink, on the host.
  void emit(const std::string& name, const float* data, int64_t cols) const {
    if (!sink) return;
    std::vector<float> host(static_cast<size_t>(tokens() * cols));
    backend->download(data, host.size() * sizeof(float), host.data());
    (*sink)(name, host.data(), tokens(), cols);
  }
};

Transformer::Transformer(const Model& model, Backend* backend, const RankShare& share)
    : model_(model),
      share_(share),
      own_backend_(backend ? nullptr : make_cpu_backend(model)),
      backend_(backend ? backend : own_backend_.get()) {}

int32_t Transformer::embedding_row(int32_t id) const {
  if (!share_.vocab_parallel) return id;
  const int64_t row = id - share_.vocab_begin;
  return row >= 0 && row < model_.weights.embed.shape[0] ? static_cast<int32_t>(row) : -1;
}

void Transformer::sum_across_ranks(float* x, int64_t count) const {
  if (share_.collective) share_.collective->all_reduce_sum(x, count);
}

void Transformer::embed(const Batch& step, float* x) const {
  const ArchSpec& a = model_.arch;
  Backend& be = *backend_;
  const int64_t hidden = model_.config.hidden_size, n = step.tokens() * hidden;
  be.embed(Backend::Ids::Tokens, x);
  if (share_.vocab_parallel) sum_across_ranks(x, n);  // each token's row from the rank holding it
  if (a.embed_scale != 1.0f) be.scale(x, a.embed_scale, n);
  if (!a.rope) {
    Buffer learned = be.floats(n);  // [tokens, hidden]
    be.embed(Backend::Ids::Positions, learned.floats());
    be.add(x, learned.floats(), n);
  }
}

// q [tokens, heads * head_dim]; k, v [tokens, kv_heads * head_dim], after biases, norms and clipping.
void Transformer::project_qkv(const Batch& step, int64_t layer, const float* normed, float* q, float* k,
                              float* v) const {
  const ModelConfig& c = model_.config;
  const ArchSpec& a = model_.arch;
  const LayerWeights& w = model_.weights.layers[static_cast<size_t>(layer)];
  Backend& be = *backend_;
  const int64_t tokens = step.tokens(), q_dim = c.heads * c.head_dim, kv_dim = c.kv_heads * c.head_dim;
  const Linear* layers[] = {&w.q, &w.k, &w.v};
  float* const outs[] = {q, k, v};
  be.linears(normed, tokens, layers, outs);
  if (a.qk_norm == QkNorm::PerHead) {
    be.norm(a.norm, q, w.q_norm, tokens * c.heads, c.head_dim, c.norm_eps, q);
    be.norm(a.norm, k, w.k_norm, tokens * c.kv_heads, c.head_dim, c.norm_eps, k);
  } else if (a.qk_norm == QkNorm::Full) {
    be.norm(a.norm, q, w.q_norm, tokens, q_dim, c.norm_eps, q);
    be.norm(a.norm, k, w.k_norm, tokens, kv_dim, c.norm_eps, k);
  }
  if (a.clip_qkv > 0) {
    be.clamp(q, a.clip_qkv, tokens * q_dim);
    be.clamp(k, a.clip_qkv, tokens * kv_dim);
    be.clamp(v, a.clip_qkv, tokens * kv_dim);
  }
}

void Transformer::attention_block(const Batch& batch, int64_t layer, const float* normed, KvCache& cache,
                                  float* out) const {
  const ModelConfig& c = model_.config;
  const ArchSpec& a = model_.arch;
  Backend& be = *backend_;
  const int64_t tokens = batch.tokens(), q_dim = c.heads * c.head_dim, kv_dim = c.kv_heads * c.head_dim;
  Buffer q = be.floats(tokens * q_dim);                                   // [tokens, heads * head_dim]
  Buffer k = be.floats(tokens * kv_dim), v = be.floats(tokens * kv_dim);  // [tokens, kv_heads * head_dim]
  project_qkv(batch, layer, normed, q.floats(), k.floats(), v.floats());

  AttentionParams params{c.heads,      c.kv_heads,     c.head_dim,
                         a.attn_scale, a.attn_softcap, a.layers[static_cast<size_t>(layer)].sliding_window};
  if (a.attn_scale_by_layer) params.scale /= static_cast<float>(layer + 1);
  Buffer attn = be.floats(tokens * q_dim);  // [tokens, heads * head_dim]
  const bool local = a.layers[static_cast<size_t>(layer)].local_rope;
  if (a.rope && !batch.sink) {  // nobody watches the rotated q and k
    be.rope_attention(layer, q.floats(), k.floats(), v.floats(), params, local, a.rope_pairs, cache, attn.floats());
  } else {
    if (a.rope) be.rope(q.floats(), c.heads, k.floats(), c.kv_heads, c.head_dim, local, a.rope_pairs);
    if (layer == 0) {
      batch.emit("layer0.q_rope", q.floats(), q_dim);
      batch.emit("layer0.k_rope", k.floats(), kv_dim);
    }
    be.attention(layer, q.floats(), k.floats(), v.floats(), params, cache, attn.floats());
  }
  be.linear(attn.floats(), tokens, model_.weights.layers[static_cast<size_t>(layer)].o, out);
  sum_across_ranks(out, tokens * c.hidden_size);
}

void Transformer::mlp_block(int64_t layer, const float* normed, int64_t tokens, float* out) const {
  const ModelConfig& c = model_.config;
  const ArchSpec& a = model_.arch;
  const LayerWeights& w = model_.weights.layers[static_cast<size_t>(layer)];
  Backend& be = *backend_;
  const int64_t n = tokens * c.intermediate_size;
  Buffer inner = be.floats(n);  // [tokens, intermediate]: what the down projection reads
  if (a.mlp == MlpKind::Plain) {
    be.linear(normed, tokens, w.up, inner.floats());
    be.activate(a.activation, inner.floats(), n);
  } else {
    be.gated_linear(normed, tokens, w.gate, w.up, a.activation, inner.floats());
  }
  be.linear(inner.floats(), tokens, w.down, out);
  sum_across_ranks(out, tokens * c.hidden_size);
}

// Each token goes to its top_k experts by router probability (softmax in float32, as HF does);
// experts run on the rows routed to them and their outputs are summed with the probabilities as
// weights, in expert order. Routing is decided on the host from the downloaded router logits.
void Transformer::moe_block(int64_t layer, const float* normed, int64_t tokens, float* out) const {
  const ModelConfig& c = model_.config;
  const MoeSpec& moe = model_.arch.moe;
  const LayerWeights& w = model_.weights.layers[static_cast<size_t>(layer)];
  Backend& be = *backend_;
  const int64_t hidden = c.hidden_size, experts = moe.experts;
  Buffer router = be.floats(tokens * experts);  // [tokens, experts]
  be.linear(normed, tokens, w.router, router.floats());
  std::vector<float> probs(static_cast<size_t>(tokens * experts));
  be.download(router.floats(), probs.size() * sizeof(float), probs.data());
  struct Routed {
    std::vector<int64_t> tokens;
    std::vector<float> weights;
  };
  std::vector<Routed> routed(static_cast<size_t>(experts));
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
      routed[static_cast<size_t>(e)].tokens.push_back(t);
      routed[static_cast<size_t>(e)].weights.push_back(moe.norm_topk_prob ? p[e] / top_sum : p[e]);
    }
  }
  be.zero(out, static_cast<size_t>(tokens * hidden) * sizeof(float));
  for (int64_t e = 0; e < experts; ++e) {
    const Routed& picks = routed[static_cast<size_t>(e)];
    if (picks.tokens.empty()) continue;
    const auto n = static_cast<int64_t>(picks.tokens.size());
    const Expert& x = w.experts[static_cast<size_t>(e)];
    Buffer rows = be.floats(n * hidden);  // [n, hidden]: the tokens routed here
    be.gather_rows(normed, picks.tokens, hidden, rows.floats());
    Buffer gated = be.floats(n * c.intermediate_size);  // [n, intermediate]
    Buffer down = be.floats(n * hidden);                // [n, hidden]
    be.gated_linear(rows.floats(), n, x.gate, x.up, model_.arch.activation, gated.floats());
    be.linear(gated.floats(), n, x.down, down.floats());
    be.scatter_add_rows(down.floats(), picks.tokens, picks.weights, hidden, out);
  }
}

// Only the rows the slices ask for go through the final norm (and the LM head).
Buffer Transformer::final_rows(const Batch& batch, const float* x) const {
  const ModelConfig& c = model_.config;
  const ArchSpec& a = model_.arch;
  Backend& be = *backend_;
  const int64_t hidden = c.hidden_size;
  const auto n = static_cast<int64_t>(batch.logit_rows.size());
  Buffer normed = be.floats(n * hidden);  // [n, hidden]
  if (n == batch.tokens()) {              // every row, in order (decode)
    be.norm(a.norm, x, model_.weights.final_norm, n, hidden, c.norm_eps, normed.floats());
    batch.emit("final_norm", normed.floats(), hidden);
  } else {
    be.gather_rows(x, batch.logit_rows, hidden, normed.floats());
    be.norm(a.norm, normed.floats(), model_.weights.final_norm, n, hidden, c.norm_eps, normed.floats());
  }
  return normed;
}

Buffer Transformer::logits(const Batch& batch, const float* x) const {
  const ModelConfig& c = model_.config;
  const ArchSpec& a = model_.arch;
  Backend& be = *backend_;
  const auto n = static_cast<int64_t>(batch.logit_rows.size());
  if (n == 0) return {};
  if (!c.has_lm_head) fail("this model has no LM head (an embedding model's weights): it makes embeddings, not text");
  const Buffer normed = final_rows(batch, x);
  Buffer logits = be.floats(n * model_.weights.lm_head.out_features());  // [n, this rank's vocabulary rows]
  be.linear(normed.floats(), n, model_.weights.lm_head, logits.floats());
  if (share_.vocab_parallel) logits = join_vocabulary(logits.floats(), n);
  if (a.final_softcap > 0) be.softcap(logits.floats(), a.final_softcap, n * c.vocab_size);
  return logits;
}

Buffer Transformer::join_vocabulary(const float* mine, int64_t rows) const {
  Backend& be = *backend_;
  const int64_t share = model_.weights.lm_head.out_features(), vocab = model_.config.vocab_size;
  Buffer all = be.floats(share_.ranks * rows * share);  // [ranks, rows, share]
  share_.collective->all_gather(mine, rows * share, all.floats());
  Buffer logits = be.floats(rows * vocab);  // [rows, vocab]: rank r's columns [r * share, (r + 1) * share)
  for (int r = 0; r < share_.ranks; ++r) {
    be.copy_strided(all.floats() + r * rows * share, share, logits.floats() + r * share, vocab, rows, share);
  }
  return logits;
}

std::vector<float> Transformer::forward(std::span<const SequenceSlice> slices, KvCache& cache,
                                        const ActivationSink* sink) const {
  std::vector<float> logits;
  step(slices, cache, sink, Head::Logits, [&](int64_t rows) {
    logits.resize(static_cast<size_t>(rows * model_.config.vocab_size));
    return Backend::StepOutput{.logits = logits.data()};
  });
  return logits;
}

std::vector<float> Transformer::forward_hidden(std::span<const SequenceSlice> slices, KvCache& cache) const {
  std::vector<float> hidden;
  step(slices, cache, nullptr, Head::Hidden, [&](int64_t rows) {
    hidden.resize(static_cast<size_t>(rows * model_.config.hidden_size));
    return Backend::StepOutput{.logits = hidden.data()};
  });
  return hidden;
}

std::vector<int32_t> Transformer::forward_greedy(std::span<const SequenceSlice> slices, KvCache& cache,
                                                 const AllowedTokens& allowed) const {
  std::vector<int32_t> tokens;
  step(slices, cache, nullptr, Head::Logits, [&](int64_t rows) {
    tokens.resize(static_cast<size_t>(rows));
    return Backend::StepOutput{.picks = tokens.data(), .allowed = allowed};
  });
  return tokens;
}

void Transformer::step(std::span<const SequenceSlice> slices, KvCache& cache, const ActivationSink* sink, Head head,
                       const std::function<Backend::StepOutput(int64_t rows)>& output) const {
  const Batch batch = prepare(slices, cache, sink, head);
  const auto rows = static_cast<int64_t>(batch.logit_rows.size());
  const Backend::StepOutput out = output(rows);
  if (rows == 0) {  // keys and values only
    residual(batch, cache);
    return;
  }
  const bool logits = head == Head::Logits;
  const auto work = [&](const Backend::LogitsUser& use) {
    const Buffer x = residual(batch, cache);
    const Buffer result = logits ? this->logits(batch, x.floats()) : final_rows(batch, x.floats());
    use(result.floats());
  };
  batch.step.run(work, rows, logits ? model_.config.vocab_size : model_.config.hidden_size, out);
}

// Decode steps (a token per sequence, each wanting its logits) repeat the same operations on the
// same buffers for a given number of sequences and cache, so the backend may replay them, unless
// the step copies to the host midway: activations for a sink, or MoE routing.
uint64_t Transformer::replay_key(std::span<const SequenceSlice> slices, const KvCache& cache, int64_t tokens,
                                 int64_t logit_rows, bool sink, Head head) const {
  const bool decode = head == Head::Logits && logit_rows == tokens && logit_rows == static_cast<int64_t>(slices.size());
  if (!decode || sink || model_.arch.mlp == MlpKind::Moe) return 0;
  return cache.id() << 24 | static_cast<uint64_t>(logit_rows);
}

Transformer::Batch Transformer::prepare(std::span<const SequenceSlice> slices, KvCache& cache,
                                        const ActivationSink* sink, Head head) const {
  const ModelConfig& c = model_.config;
  const ArchSpec& a = model_.arch;
  if (&cache.backend() != backend_) {
    fail("the KV cache lives on the {} backend, the model runs on {}", cache.backend().name(), backend_->name());
  }
  const int64_t vocab = c.vocab_size;
  StepLayout layout;
  std::vector<int64_t> logit_rows;
  for (const auto& slice : slices) {
    const auto count = static_cast<int64_t>(slice.tokens.size());
    if (count == 0) fail("forward needs at least one token per sequence");
    const int64_t end = slice.first_pos + count;
    if (end > static_cast<int64_t>(slice.blocks.size()) * cache.block_size()) {
      fail("sequence of {} tokens exceeds its {} KV blocks of {}", end, slice.blocks.size(), cache.block_size());
    }
    if (!a.rope && end > model_.weights.position_embed.shape[0]) {
      fail("position {} is past the {} learned positions of this model", end - 1,
           model_.weights.position_embed.shape[0]);
    }
    for (int32_t id : slice.tokens) {
      if (id < 0 || id >= vocab) fail("token id {} is outside the vocabulary of {} tokens", id, vocab);
    }
    layout.sequences.push_back({layout.tokens, count, slice.first_pos, slice.blocks});
    layout.positions.resize(static_cast<size_t>(layout.tokens + count));
    const int64_t* positions = layout.positions.data() + layout.tokens;  // this slice's
    std::iota(layout.positions.begin() + layout.tokens, layout.positions.end(), slice.first_pos);
    const int64_t rope_length = std::max(end, slice.rope_length);
    if (a.rope)
      layout.rope.append(rope_frequencies(c.rope, c.head_dim, c.max_positions, rope_length), positions, count);
    if (a.local_rope) {
      layout.local_rope.append(rope_frequencies(*a.local_rope, c.head_dim, c.max_positions, rope_length), positions,
                               count);
    }
    for (int32_t id : slice.tokens) layout.token_ids.push_back(embedding_row(id));
    if (slice.logits != LogitsFor::None) {
      for (int64_t r = slice.logits == LogitsFor::AllTokens ? 0 : count - 1; r < count; ++r) {
        logit_rows.push_back(layout.tokens + r);
      }
    }
    layout.tokens += count;
  }
  const uint64_t key =
      replay_key(slices, cache, layout.tokens, static_cast<int64_t>(logit_rows.size()), sink != nullptr, head);
  return Batch{backend_->begin_step(std::move(layout), key), std::move(logit_rows), sink, backend_};
}

Buffer Transformer::residual(const Batch& batch, KvCache& cache) const {
  const ModelConfig& c = model_.config;
  const ArchSpec& a = model_.arch;
  const Weights& w = model_.weights;
  Backend& be = *backend_;
  const int64_t hidden = c.hidden_size, tokens = batch.tokens();
  Buffer x = be.floats(tokens * hidden);  // [tokens, hidden]: the residual stream
  Buffer normed = be.floats(tokens * hidden), branch = be.floats(tokens * hidden);  // [tokens, hidden]
  embed(batch, x.floats());
  batch.emit("embed", x.floats(), hidden);
  // Each residual add goes with the norm after it (the next block's input).
  be.norm(a.norm, x.floats(), w.layers[0].attn_norm, tokens, hidden, c.norm_eps, normed.floats());
  batch.emit("layer0.input_norm", normed.floats(), hidden);
  for (int64_t l = 0; l < c.layers; ++l) {
    const LayerWeights& lw = w.layers[static_cast<size_t>(l)];
    attention_block(batch, l, normed.floats(), cache, branch.floats());
    batch.emit(fmt::format("layer{}.attn_out", l), branch.floats(), hidden);
    if (a.post_norms) be.norm(a.norm, branch.floats(), lw.post_attn_norm, tokens, hidden, c.norm_eps, branch.floats());
    be.add_norm(a.norm, x.floats(), branch.floats(), lw.mlp_norm, tokens, hidden, c.norm_eps, normed.floats());
    if (a.mlp == MlpKind::Moe) {
      moe_block(l, normed.floats(), tokens, branch.floats());
    } else {
      mlp_block(l, normed.floats(), tokens, branch.floats());
    }
    batch.emit(fmt::format("layer{}.mlp_out", l), branch.floats(), hidden);
    if (a.post_norms) be.norm(a.norm, branch.floats(), lw.post_mlp_norm, tokens, hidden, c.norm_eps, branch.floats());
    if (l + 1 < c.layers) {
      const Norm& next = w.layers[static_cast<size_t>(l + 1)].attn_norm;
      be.add_norm(a.norm, x.floats(), branch.floats(), next, tokens, hidden, c.norm_eps, normed.floats());
    } else {
      be.add(x.floats(), branch.floats(), tokens * hidden);  // the final norm is only for the rows that want logits
    }
    batch.emit(fmt::format("layer{}.out", l), x.floats(), hidden);
  }
  return x;
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
