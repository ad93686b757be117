// OLMoE: a mixture of SwiGLU experts chosen per token by a softmax router, and RMSNorm over the
// whole q and k projections.
#include "model/arch/common.h"

namespace nanoserve::arch {

namespace {

ArchSpec describe(const nlohmann::json& j, const ModelConfig& c, const std::string& source) {
  JsonFields f(j, source);
  ArchSpec spec = base_spec("olmoe", c);
  spec.activation = parse_activation(f, "hidden_act", "silu");
  spec.qk_norm = QkNorm::Full;
  spec.mlp = MlpKind::Moe;
  spec.moe.experts = f.positive_int("num_experts");
  spec.moe.top_k = f.positive_int("num_experts_per_tok");
  if (spec.moe.top_k > spec.moe.experts) {
    f.invalid("num_experts_per_tok", "at most num_experts (" + std::to_string(spec.moe.experts) + ")");
  }
  spec.moe.norm_topk_prob = f.boolean("norm_topk_prob", false);
  spec.clip_qkv = static_cast<float>(f.positive_number("clip_qkv", 0));
  spec.qkv_bias = spec.out_bias = f.boolean("attention_bias", false);
  return spec;
}

WeightNames names() {
  WeightNames n = llama_names();
  n.gate = n.up = n.down = "";
  n.router = "model.layers.{layer}.mlp.gate.weight";
  n.expert_gate = "model.layers.{layer}.mlp.experts.{expert}.gate_proj.weight";
  n.expert_up = "model.layers.{layer}.mlp.experts.{expert}.up_proj.weight";
  n.expert_down = "model.layers.{layer}.mlp.experts.{expert}.down_proj.weight";
  return n;
}

const WeightNames kNames = names();

}  // namespace

const ArchFamily& olmoe() {
  static const ArchFamily family{"olmoe", nullptr, describe, &kNames};
  return family;
}

}  // namespace nanoserve::arch
