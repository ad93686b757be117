#include "model/weights.h"

#include <fmt/format.h>

#include "util/error.h"

namespace nanoserve {

namespace {

// Builds the slot list for one model; each method lists one kind of tensor.
class SlotLister {
 public:
  SlotLister(const WeightNames& names, std::vector<WeightSlot>& slots) : names_(names), slots_(slots) {}

  void at(int64_t layer, int64_t expert = -1) {
    layer_ = layer;
    expert_ = expert;
  }

  // A whole tensor, e.g. a norm gamma or an embedding.
  void tensor(const std::string& name, const std::string& pattern, Shape shape, const std::string& why, TensorView* t) {
    slots_.push_back({name, hf(pattern), std::move(shape), why, {{name, t, 0}}, false});
    slots_.back().parts[0].size = slots_.back().shape[0];
  }

  void norm(const std::string& name, const std::string& weight, const std::string& bias, int64_t size,
            const std::string& why, Norm* n) {
    tensor(name, weight, {size}, why, &n->weight);
    if (!bias.empty()) tensor(name + ".bias", bias, {size}, why, &n->bias);
  }

  void linear(const std::string& name, const std::string& weight, const std::string& bias, int64_t out, int64_t in,
              const std::string& why, Linear* l) {
    l->in_out = names_.in_out;
    tensor(name, weight, names_.in_out ? Shape{in, out} : Shape{out, in}, why, &l->weight);
    slots_.back().in_out = names_.in_out;
    slots_.back().parts[0].size = out;
    if (!bias.empty()) tensor(name + ".bias", bias, {out}, why, &l->bias);
  }

  // One [count, out, in] tensor holding a linear per index of its first dimension (GGUF's experts).
  void stacked(const std::string& name, const std::string& weight, int64_t out, int64_t in, const std::string& why,
               const std::vector<std::pair<std::string, Linear*>>& parts) {
    WeightSlot w{name, hf(weight), {static_cast<int64_t>(parts.size()), out, in}, why, {}, false};
    for (const auto& [part_name, linear] : parts) w.parts.push_back({part_name, &linear->weight, 1});
    slots_.push_back(std::move(w));
  }

  // A tensor holding several linears stacked along the output dimension (qkv_proj, gate_up_proj).
  void fused(const std::string& name, const std::string& weight, const std::string& bias, int64_t in,
             const std::string& why, std::vector<std::pair<std::string, std::pair<Linear*, int64_t>>> parts) {
    int64_t out = 0;
    WeightSlot w{name, hf(weight), {}, why, {}, names_.in_out}, b{name + ".bias", {}, {}, why, {}, false};
    for (auto& [part_name, target] : parts) {
      auto [linear, size] = target;
      linear->in_out = names_.in_out;
      w.parts.push_back({part_name, &linear->weight, size});
      b.parts.push_back({part_name + ".bias", &linear->bias, size});
      out += size;
    }
    w.shape = names_.in_out ? Shape{in, out} : Shape{out, in};
    b.shape = {out};
    slots_.push_back(std::move(w));
    if (!bias.empty()) {
      b.file_name = hf(bias);
      slots_.push_back(std::move(b));
    }
  }

 private:
  std::string hf(const std::string& pattern) const {
    if (pattern.empty()) fail("the family's weight names lack a tensor its description requires (layer {})", layer_);
    return fmt::format(fmt::runtime(pattern), fmt::arg("layer", layer_), fmt::arg("expert", expert_));
  }

  const WeightNames& names_;
  std::vector<WeightSlot>& slots_;
  int64_t layer_ = 0, expert_ = 0;
};

std::string if_set(bool flag, const std::string& name) { return flag ? name : std::string(); }

void list_attention(SlotLister& s, LayerWeights& l, const std::string& p, const ModelConfig& c, const ArchSpec& a,
                    const WeightNames& n) {
  const int64_t hidden = c.hidden_size, q_dim = c.heads * c.head_dim, kv_dim = c.kv_heads * c.head_dim;
  const std::string q_why =
      fmt::format("num_attention_heads={}, head_dim={}, hidden_size={}", c.heads, c.head_dim, hidden);
  const std::string kv_why =
      fmt::format("num_key_value_heads={}, head_dim={}, hidden_size={}", c.kv_heads, c.head_dim, hidden);
  if (!n.qkv.empty()) {
    s.fused(p + "attn.qkv", n.qkv, if_set(a.qkv_bias, n.qkv_bias), hidden,
            q_why + ", num_key_value_heads=" + std::to_string(c.kv_heads),
            {{p + "attn.q", {&l.q, q_dim}}, {p + "attn.k", {&l.k, kv_dim}}, {p + "attn.v", {&l.v, kv_dim}}});
  } else {
    s.linear(p + "attn.q", n.q, if_set(a.qkv_bias, n.q_bias), q_dim, hidden, q_why, &l.q);
    s.linear(p + "attn.k", n.k, if_set(a.qkv_bias, n.k_bias), kv_dim, hidden, kv_why, &l.k);
    s.linear(p + "attn.v", n.v, if_set(a.qkv_bias, n.v_bias), kv_dim, hidden, kv_why, &l.v);
  }
  if (a.qk_norm == QkNorm::PerHead) {
    const std::string why = fmt::format("head_dim={}", c.head_dim);
    s.norm(p + "attn.q_norm", n.q_norm, "", c.head_dim, why, &l.q_norm);
    s.norm(p + "attn.k_norm", n.k_norm, "", c.head_dim, why, &l.k_norm);
  } else if (a.qk_norm == QkNorm::Full) {
    s.norm(p + "attn.q_norm", n.q_norm, "", q_dim, q_why, &l.q_norm);
    s.norm(p + "attn.k_norm", n.k_norm, "", kv_dim, kv_why, &l.k_norm);
  }
  s.linear(p + "attn.o", n.o, if_set(a.out_bias, n.o_bias), hidden, q_dim, q_why, &l.o);
}

// Each projection of all experts in one tensor; expert e's linear is slice e of it.
void list_stacked_experts(SlotLister& s, LayerWeights& l, const std::string& p, const ModelConfig& c,
                          const std::string& why, const WeightNames& n) {
  std::vector<std::pair<std::string, Linear*>> gate, up, down;
  for (size_t e = 0; e < l.experts.size(); ++e) {
    const std::string ep = fmt::format("{}mlp.experts.{}.", p, e);
    gate.push_back({ep + "gate", &l.experts[e].gate});
    up.push_back({ep + "up", &l.experts[e].up});
    down.push_back({ep + "down", &l.experts[e].down});
  }
  s.stacked(p + "mlp.experts.gate", n.expert_gate, c.intermediate_size, c.hidden_size, why, gate);
  s.stacked(p + "mlp.experts.up", n.expert_up, c.intermediate_size, c.hidden_size, why, up);
  s.stacked(p + "mlp.experts.down", n.expert_down, c.hidden_size, c.intermediate_size, why, down);
}

void list_mlp(SlotLister& s, LayerWeights& l, const std::string& p, int64_t layer, const ModelConfig& c,
              const ArchSpec& a, const WeightNames& n) {
  const int64_t hidden = c.hidden_size, inter = c.intermediate_size;
  const std::string why = fmt::format("intermediate_size={}, hidden_size={}", inter, hidden);
  switch (a.mlp) {
    case MlpKind::Gated:
      if (!n.gate_up.empty()) {
        s.fused(p + "mlp.gate_up", n.gate_up, "", hidden, why,
                {{p + "mlp.gate", {&l.gate, inter}}, {p + "mlp.up", {&l.up, inter}}});
      } else {
        s.linear(p + "mlp.gate", n.gate, "", inter, hidden, why, &l.gate);
        s.linear(p + "mlp.up", n.up, "", inter, hidden, why, &l.up);
      }
      s.linear(p + "mlp.down", n.down, "", hidden, inter, why, &l.down);
      break;
    case MlpKind::Plain:
      s.linear(p + "mlp.up", n.up, if_set(a.mlp_bias, n.up_bias), inter, hidden, why, &l.up);
      s.linear(p + "mlp.down", n.down, if_set(a.mlp_bias, n.down_bias), hidden, inter, why, &l.down);
      break;
    case MlpKind::Moe: {
      s.linear(p + "mlp.router", n.router, "", a.moe.experts, hidden,
               fmt::format("num_experts={}, hidden_size={}", a.moe.experts, hidden), &l.router);
      l.experts.resize(static_cast<size_t>(a.moe.experts));
      if (n.experts_stacked) {
        list_stacked_experts(s, l, p, c, why, n);
        break;
      }
      for (int64_t e = 0; e < a.moe.experts; ++e) {
        s.at(layer, e);
        Expert& x = l.experts[static_cast<size_t>(e)];
        const std::string ep = fmt::format("{}mlp.experts.{}.", p, e);
        s.linear(ep + "gate", n.expert_gate, "", inter, hidden, why, &x.gate);
        s.linear(ep + "up", n.expert_up, "", inter, hidden, why, &x.up);
        s.linear(ep + "down", n.expert_down, "", hidden, inter, why, &x.down);
      }
      s.at(layer);
      break;
    }
  }
}

}  // namespace

namespace {

// A layer's products, as pointers as const as the layer.
template <class Layer>
auto layer_linears(Layer& l) {
  std::vector<decltype(&l.q)> linears = {&l.q, &l.k, &l.v, &l.o, &l.gate, &l.up, &l.down, &l.router};
  for (auto& e : l.experts) linears.insert(linears.end(), {&e.gate, &e.up, &e.down});
  return linears;
}

// Every present norm and product, in handle order: the final norm and the LM head, then each
// layer's (an absent weight has no data and no handle).
template <class W, class OnNorm, class OnLinear>
void each_weight(W& w, OnNorm on_norm, OnLinear on_linear) {
  if (w.final_norm.weight.data) on_norm(w.final_norm);
  if (w.lm_head.weight.data) on_linear(w.lm_head);  // none for an embedding model's base weights
  for (auto& l : w.layers) {
    for (auto* n : {&l.attn_norm, &l.q_norm, &l.k_norm, &l.post_attn_norm, &l.mlp_norm, &l.post_mlp_norm}) {
      if (n->weight.data) on_norm(*n);
    }
    for (auto* linear : layer_linears(l)) {
      if (linear->weight.data) on_linear(*linear);
    }
  }
}

}  // namespace

std::vector<const Linear*> linears_of(const LayerWeights& l) { return layer_linears(l); }

void number_weights(Weights& w) {
  WeightId norms = 0, linears = 0;
  each_weight(
      w, [&](Norm& n) { n.id = norms++; }, [&](Linear& l) { l.id = linears++; });
}

WeightSet weight_set(const Weights& w) {
  WeightSet set;
  set.token_embed = w.embed;
  set.position_embed = w.position_embed;
  const auto check = [](WeightId id, size_t index, const TensorView& view) {
    if (id != static_cast<WeightId>(index))
      fail("{}: handle {}, expected {} (weights not numbered)", view.name, id, index);
  };
  each_weight(
      w,
      [&](const Norm& n) {
        check(n.id, set.norms.size(), n.weight);
        set.norms.push_back(n);
      },
      [&](const Linear& l) {
        check(l.id, set.linears.size(), l.weight);
        set.linears.push_back(l);
      });
  return set;
}

std::vector<WeightSlot> weight_slots(Weights& w, const ModelConfig& c, const ArchSpec& a, const WeightNames& n) {
  const int64_t hidden = c.hidden_size;
  const std::string hidden_why = fmt::format("hidden_size={}", hidden);
  const std::string vocab_why = fmt::format("vocab_size={}, hidden_size={}", c.vocab_size, hidden);
  const bool layer_norm = a.norm == NormKind::Layer;
  std::vector<WeightSlot> slots;
  SlotLister s(n, slots);
  s.tensor("embed", n.embed, {c.vocab_size, hidden}, vocab_why, &w.embed);
  if (!a.rope) {
    s.tensor("position_embed", n.position_embed, {c.max_positions, hidden},
             fmt::format("max_position_embeddings={}, hidden_size={}", c.max_positions, hidden), &w.position_embed);
  }
  w.layers.assign(static_cast<size_t>(c.layers), {});
  for (int64_t i = 0; i < c.layers; ++i) {
    LayerWeights& l = w.layers[static_cast<size_t>(i)];
    const std::string p = fmt::format("layers.{}.", i);
    s.at(i);
    s.norm(p + "attn_norm", n.attn_norm, if_set(layer_norm, n.attn_norm_bias), hidden, hidden_why, &l.attn_norm);
    list_attention(s, l, p, c, a, n);
    if (a.post_norms) s.norm(p + "post_attn_norm", n.post_attn_norm, "", hidden, hidden_why, &l.post_attn_norm);
    s.norm(p + "mlp_norm", n.mlp_norm, if_set(layer_norm, n.mlp_norm_bias), hidden, hidden_why, &l.mlp_norm);
    list_mlp(s, l, p, i, c, a, n);
    if (a.post_norms) s.norm(p + "post_mlp_norm", n.post_mlp_norm, "", hidden, hidden_why, &l.post_mlp_norm);
  }
  s.norm("final_norm", n.final_norm, if_set(layer_norm, n.final_norm_bias), hidden, hidden_why, &w.final_norm);
  if (!c.tied_embeddings && c.has_lm_head)
    s.tensor("lm_head", n.lm_head, {c.vocab_size, hidden}, vocab_why, &w.lm_head.weight);
  return slots;
}

}  // namespace nanoserve
