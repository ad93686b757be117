// GPT-2: LayerNorm with bias, learned position embeddings, Conv1D weights stored [in, out], fused
// c_attn, plain MLP with gelu_new, biases everywhere, tied head.
#include "model/arch/common.h"

#include <cstdint>

namespace nanoserve::arch {

namespace {

using json = nlohmann::json;

// GPT-2's config names, renamed to the ones ModelConfig reads.
void normalize(json& j) {
  const std::pair<const char*, const char*> renames[] = {
      {"n_embd", "hidden_size"},         {"n_layer", "num_hidden_layers"},
      {"n_head", "num_attention_heads"}, {"n_positions", "max_position_embeddings"},
      {"n_inner", "intermediate_size"},  {"layer_norm_epsilon", "rms_norm_eps"}};
  for (const auto& [from, to] : renames) {
    if (j.contains(from) && !j.contains(to)) j[to] = j[from];
  }
  if ((!j.contains("intermediate_size") || j["intermediate_size"].is_null()) && j.contains("hidden_size") &&
      j["hidden_size"].is_number_integer() && j["hidden_size"].get<int64_t>() <= INT64_MAX / 4) {
    j["intermediate_size"] = 4 * j["hidden_size"].get<int64_t>();  // a hidden_size that does not fit is refused later
  }
  if (!j.contains("rms_norm_eps")) j["rms_norm_eps"] = 1e-5;
  if (!j.contains("tie_word_embeddings")) j["tie_word_embeddings"] = true;
}

ArchSpec describe(const json& j, const ModelConfig& c, const std::string& source) {
  JsonFields f(j, source);
  ArchSpec spec = base_spec("gpt2", c);
  spec.norm = NormKind::Layer;
  spec.activation = parse_activation(f, "activation_function", "gelu_new");
  spec.mlp = MlpKind::Plain;
  spec.qkv_bias = spec.out_bias = spec.mlp_bias = true;
  spec.rope = false;
  if (!f.boolean("scale_attn_weights", true)) spec.attn_scale = 1.0f;
  spec.attn_scale_by_layer = f.boolean("scale_attn_by_inverse_layer_idx", false);
  reject_enabled(f, "add_cross_attention", "gpt2");
  return spec;
}

WeightNames names() {
  WeightNames n;
  n.embed = "transformer.wte.weight";
  n.position_embed = "transformer.wpe.weight";
  n.final_norm = "transformer.ln_f.weight";
  n.final_norm_bias = "transformer.ln_f.bias";
  n.lm_head = "lm_head.weight";
  n.attn_norm = "transformer.h.{layer}.ln_1.weight";
  n.attn_norm_bias = "transformer.h.{layer}.ln_1.bias";
  n.qkv = "transformer.h.{layer}.attn.c_attn.weight";
  n.qkv_bias = "transformer.h.{layer}.attn.c_attn.bias";
  n.o = "transformer.h.{layer}.attn.c_proj.weight";
  n.o_bias = "transformer.h.{layer}.attn.c_proj.bias";
  n.mlp_norm = "transformer.h.{layer}.ln_2.weight";
  n.mlp_norm_bias = "transformer.h.{layer}.ln_2.bias";
  n.up = "transformer.h.{layer}.mlp.c_fc.weight";
  n.up_bias = "transformer.h.{layer}.mlp.c_fc.bias";
  n.down = "transformer.h.{layer}.mlp.c_proj.weight";
  n.down_bias = "transformer.h.{layer}.mlp.c_proj.bias";
  n.in_out = true;
  n.optional_prefix = "transformer.";
  n.ignored_suffixes = {".attn.bias", ".attn.masked_bias"};  // causal-mask buffers in older files
  return n;
}

const WeightNames kNames = names();

}  // namespace

const ArchFamily& gpt2() {
  static const ArchFamily family{"gpt2", normalize, describe, &kNames};
  return family;
}

}  // namespace nanoserve::arch
