#include "model/arch/common.h"

#include <cmath>

#include "util/error.h"

namespace nanoserve::arch {

using json = nlohmann::json;

ArchSpec base_spec(const std::string& family, const ModelConfig& config) {
  ArchSpec spec;
  spec.family = family;
  spec.attn_scale = 1.0f / std::sqrt(static_cast<float>(config.head_dim));
  spec.layers.assign(static_cast<size_t>(config.layers), LayerSpec{});
  return spec;
}

Activation parse_activation(const JsonFields& f, const std::string& key, const std::string& fallback) {
  const std::string name = f.string(key, fallback);
  if (name == "silu" || name == "swish") return Activation::Silu;
  if (name == "gelu_pytorch_tanh" || name == "gelu_new" || name == "gelu_fast") return Activation::GeluTanh;
  fail("{}: {} '{}' is not supported (supported: silu, gelu_pytorch_tanh, gelu_new)", f.source(), key, name);
}

void read_layer_types(const JsonFields& f, const ModelConfig& config, bool all_slide_by_default, ArchSpec& spec) {
  const int64_t window = f.positive_int("sliding_window", 0);
  if (f.has("layer_types")) {
    const json& types = f.value("layer_types");
    if (!types.is_array() || static_cast<int64_t>(types.size()) != config.layers) {
      f.invalid("layer_types", fmt::format("a list of {} layer types (num_hidden_layers)", config.layers));
    }
    for (size_t i = 0; i < types.size(); ++i) {
      const std::string type = types[i].is_string() ? types[i].get<std::string>() : types[i].dump();
      if (type == "sliding_attention") {
        if (window == 0) fail("{}: layer {} is sliding_attention but sliding_window is not set", f.source(), i);
        spec.layers[i].sliding_window = window;
        spec.layers[i].local_rope = spec.local_rope.has_value();
      } else if (type != "full_attention") {
        fail("{}: layer_types[{}] = '{}' is not supported (supported: full_attention, sliding_attention)", f.source(),
             i, type);
      }
    }
  } else if (all_slide_by_default && window > 0) {
    for (auto& layer : spec.layers) layer.sliding_window = window;
  }
}

void reject_enabled(const JsonFields& f, const std::string& key, const std::string& family) {
  if (f.boolean(key, false)) fail("{}: {}=true is not supported for {}", f.source(), key, family);
}

WeightNames llama_names() {
  WeightNames n;
  n.embed = "model.embed_tokens.weight";
  n.final_norm = "model.norm.weight";
  n.lm_head = "lm_head.weight";
  n.attn_norm = "model.layers.{layer}.input_layernorm.weight";
  n.q = "model.layers.{layer}.self_attn.q_proj.weight";
  n.k = "model.layers.{layer}.self_attn.k_proj.weight";
  n.v = "model.layers.{layer}.self_attn.v_proj.weight";
  n.q_bias = "model.layers.{layer}.self_attn.q_proj.bias";
  n.k_bias = "model.layers.{layer}.self_attn.k_proj.bias";
  n.v_bias = "model.layers.{layer}.self_attn.v_proj.bias";
  n.q_norm = "model.layers.{layer}.self_attn.q_norm.weight";
  n.k_norm = "model.layers.{layer}.self_attn.k_norm.weight";
  n.o = "model.layers.{layer}.self_attn.o_proj.weight";
  n.o_bias = "model.layers.{layer}.self_attn.o_proj.bias";
  n.mlp_norm = "model.layers.{layer}.post_attention_layernorm.weight";
  n.gate = "model.layers.{layer}.mlp.gate_proj.weight";
  n.up = "model.layers.{layer}.mlp.up_proj.weight";
  n.down = "model.layers.{layer}.mlp.down_proj.weight";
  n.ignored_suffixes = {".rotary_emb.inv_freq"};
  n.optional_prefix = "model.";  // the base model saved alone (Qwen2Model, Qwen3-Embedding): no "model."
  return n;
}

}  // namespace nanoserve::arch
