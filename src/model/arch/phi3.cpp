// Phi-3: fused qkv_proj and gate_up_proj (split by views at load), LongRoPE, partial rotary.
#include "model/arch/common.h"

namespace nanoserve::arch {

namespace {

ArchSpec describe(const nlohmann::json& j, const ModelConfig& c, const std::string& source) {
  JsonFields f(j, source);
  ArchSpec spec = base_spec("phi3", c);
  spec.activation = parse_activation(f, "hidden_act", "silu");
  reject_enabled(f, "attention_bias", "phi3");
  read_layer_types(f, c, /*all_slide_by_default=*/true, spec);
  return spec;
}

WeightNames names() {
  WeightNames n = llama_names();
  n.q = n.k = n.v = n.gate = n.up = "";
  n.qkv = "model.layers.{layer}.self_attn.qkv_proj.weight";
  n.gate_up = "model.layers.{layer}.mlp.gate_up_proj.weight";
  return n;
}

const WeightNames kNames = names();

}  // namespace

const ArchFamily& phi3() {
  static const ArchFamily family{"phi3", nullptr, describe, &kNames};
  return family;
}

}  // namespace nanoserve::arch
