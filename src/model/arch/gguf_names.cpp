// GGUF's tensor names, as llama.cpp's converter writes them. They name the same tensors whatever
// the family; only the fused projections follow the family (qkv and gate_up stay fused where its
// Hugging Face names are fused). Which optional tensors a file has (q/k norms, post-norms, experts)
// the loader reads from the file itself; experts are stacked per layer.
#include <utility>

#include "model/arch.h"

namespace nanoserve {

namespace {
using Field = std::string WeightNames::*;

const std::pair<Field, const char*> kGgufNames[] = {
    {&WeightNames::embed, "token_embd.weight"},
    {&WeightNames::position_embed, "position_embd.weight"},
    {&WeightNames::final_norm, "output_norm.weight"},
    {&WeightNames::final_norm_bias, "output_norm.bias"},
    {&WeightNames::lm_head, "output.weight"},
    {&WeightNames::attn_norm, "blk.{layer}.attn_norm.weight"},
    {&WeightNames::attn_norm_bias, "blk.{layer}.attn_norm.bias"},
    {&WeightNames::q, "blk.{layer}.attn_q.weight"},
    {&WeightNames::k, "blk.{layer}.attn_k.weight"},
    {&WeightNames::v, "blk.{layer}.attn_v.weight"},
    {&WeightNames::qkv, "blk.{layer}.attn_qkv.weight"},
    {&WeightNames::q_bias, "blk.{layer}.attn_q.bias"},
    {&WeightNames::k_bias, "blk.{layer}.attn_k.bias"},
    {&WeightNames::v_bias, "blk.{layer}.attn_v.bias"},
    {&WeightNames::qkv_bias, "blk.{layer}.attn_qkv.bias"},
    {&WeightNames::q_norm, "blk.{layer}.attn_q_norm.weight"},
    {&WeightNames::k_norm, "blk.{layer}.attn_k_norm.weight"},
    {&WeightNames::o, "blk.{layer}.attn_output.weight"},
    {&WeightNames::o_bias, "blk.{layer}.attn_output.bias"},
    {&WeightNames::post_attn_norm, "blk.{layer}.post_attention_norm.weight"},
    {&WeightNames::mlp_norm, "blk.{layer}.ffn_norm.weight"},
    {&WeightNames::mlp_norm_bias, "blk.{layer}.ffn_norm.bias"},
    {&WeightNames::gate, "blk.{layer}.ffn_gate.weight"},
    {&WeightNames::up, "blk.{layer}.ffn_up.weight"},
    {&WeightNames::gate_up, "blk.{layer}.ffn_up.weight"},  // [2 * intermediate, hidden]: gate rows, then up
    {&WeightNames::up_bias, "blk.{layer}.ffn_up.bias"},
    {&WeightNames::down, "blk.{layer}.ffn_down.weight"},
    {&WeightNames::down_bias, "blk.{layer}.ffn_down.bias"},
    {&WeightNames::post_mlp_norm, "blk.{layer}.post_ffw_norm.weight"},
    {&WeightNames::router, "blk.{layer}.ffn_gate_inp.weight"},
    {&WeightNames::expert_gate, "blk.{layer}.ffn_gate_exps.weight"},
    {&WeightNames::expert_up, "blk.{layer}.ffn_up_exps.weight"},
    {&WeightNames::expert_down, "blk.{layer}.ffn_down_exps.weight"},
};
}  // namespace

WeightNames gguf_weight_names(const WeightNames& hf) {
  WeightNames names;
  for (const auto& [field, gguf_name] : kGgufNames) names.*field = gguf_name;
  const bool fused_qkv = !hf.qkv.empty(), fused_gate_up = !hf.gate_up.empty();
  for (Field separate : {&WeightNames::q, &WeightNames::k, &WeightNames::v, &WeightNames::q_bias, &WeightNames::k_bias,
                         &WeightNames::v_bias}) {
    if (fused_qkv) names.*separate = "";
  }
  if (!fused_qkv) names.qkv = names.qkv_bias = "";
  if (fused_gate_up) names.gate = names.up = "";
  if (!fused_gate_up) names.gate_up = "";
  names.experts_stacked = true;
  return names;
}

}  // namespace nanoserve
