#include "model/weights.h"

#include <fmt/format.h>

namespace nanoserve {

std::vector<WeightSlot> weight_slots(Weights& w, const ModelConfig& c, const HfWeightNames& names) {
  const int64_t hidden = c.hidden_size, q_dim = c.heads * c.head_dim, kv_dim = c.kv_heads * c.head_dim;
  const std::string hidden_why = fmt::format("hidden_size={}", hidden);
  const std::string q_why = fmt::format("num_attention_heads={}, head_dim={}, hidden_size={}", c.heads, c.head_dim, hidden);
  const std::string kv_why = fmt::format("num_key_value_heads={}, head_dim={}, hidden_size={}", c.kv_heads, c.head_dim, hidden);
  const std::string mlp_why = fmt::format("intermediate_size={}, hidden_size={}", c.intermediate_size, hidden);
  const std::string vocab_why = fmt::format("vocab_size={}, hidden_size={}", c.vocab_size, hidden);

  std::vector<WeightSlot> slots;
  slots.push_back({"embed", names.embed, {c.vocab_size, hidden}, vocab_why, &w.embed});
  w.layers.resize(static_cast<size_t>(c.layers));
  for (int64_t i = 0; i < c.layers; ++i) {
    LayerWeights& l = w.layers[static_cast<size_t>(i)];
    auto add = [&](const char* part, const std::string& hf_pattern, Shape shape, const std::string& why, TensorView* t) {
      slots.push_back({fmt::format("layers.{}.{}", i, part), fmt::format(fmt::runtime(hf_pattern), i),
                       std::move(shape), why, t});
    };
    add("attn_norm", names.attn_norm, {hidden}, hidden_why, &l.attn_norm);
    add("attn.q", names.q, {q_dim, hidden}, q_why, &l.q);
    add("attn.k", names.k, {kv_dim, hidden}, kv_why, &l.k);
    add("attn.v", names.v, {kv_dim, hidden}, kv_why, &l.v);
    add("attn.o", names.o, {hidden, q_dim}, q_why, &l.o);
    add("mlp_norm", names.mlp_norm, {hidden}, hidden_why, &l.mlp_norm);
    add("mlp.gate", names.gate, {c.intermediate_size, hidden}, mlp_why, &l.gate);
    add("mlp.up", names.up, {c.intermediate_size, hidden}, mlp_why, &l.up);
    add("mlp.down", names.down, {hidden, c.intermediate_size}, mlp_why, &l.down);
  }
  slots.push_back({"final_norm", names.final_norm, {hidden}, hidden_why, &w.final_norm});
  if (!c.tied_embeddings) slots.push_back({"lm_head", names.lm_head, {c.vocab_size, hidden}, vocab_why, &w.lm_head});
  return slots;
}

}  // namespace nanoserve
