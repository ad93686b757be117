// Llama 2/3/3.2, TinyLlama and other LlamaForCausalLM checkpoints: pre-norm RMSNorm blocks,
// rotary attention with GQA, SwiGLU MLP, no biases.
#include "model/arch/families.h"
#include "util/error.h"
#include "util/json_fields.h"

namespace nanoserve::arch {

namespace {

ArchSpec describe(const nlohmann::json& config_json, const std::string& source) {
  JsonFields f(config_json, source);
  std::string act = f.string("hidden_act", "silu");
  if (act != "silu") fail("{}: hidden_act '{}' is not supported for llama (supported: silu)", source, act);
  for (const char* key : {"attention_bias", "mlp_bias"}) {
    if (f.boolean(key, false)) fail("{}: {}=true is not supported for llama yet", source, key);
  }
  return ArchSpec{.family = "llama", .norm = NormKind::Rms, .activation = Activation::Silu};
}

const HfWeightNames kNames = {
    .embed = "model.embed_tokens.weight",
    .final_norm = "model.norm.weight",
    .lm_head = "lm_head.weight",
    .attn_norm = "model.layers.{}.input_layernorm.weight",
    .q = "model.layers.{}.self_attn.q_proj.weight",
    .k = "model.layers.{}.self_attn.k_proj.weight",
    .v = "model.layers.{}.self_attn.v_proj.weight",
    .o = "model.layers.{}.self_attn.o_proj.weight",
    .mlp_norm = "model.layers.{}.post_attention_layernorm.weight",
    .gate = "model.layers.{}.mlp.gate_proj.weight",
    .up = "model.layers.{}.mlp.up_proj.weight",
    .down = "model.layers.{}.mlp.down_proj.weight",
    .ignored_suffixes = {".rotary_emb.inv_freq"},
};

}  // namespace

const ArchFamily& llama() {
  static const ArchFamily family{"llama", describe, &kNames};
  return family;
}

}  // namespace nanoserve::arch
