// Gemma 2 and Gemma 3 (text): (1 + w) RMSNorm, sandwich norms around attention and MLP, GeGLU,
// embeddings scaled by sqrt(hidden), query_pre_attn_scalar, softcapping, local/global layers.
#include <cmath>

#include "model/arch/common.h"

namespace nanoserve::arch {

namespace {

using json = nlohmann::json;

// Where normalize_gemma3 keeps the per-layer-type RoPE parameters of transformers 5 files.
constexpr const char* kByLayerType = "rope_parameters_by_layer_type";

ArchSpec describe_gemma(const std::string& family, const json& j, const ModelConfig& c, const std::string& source) {
  JsonFields f(j, source);
  ArchSpec spec = base_spec(family, c);
  spec.norm = NormKind::RmsPlusOne;
  spec.activation =
      parse_activation(f, f.has("hidden_activation") ? "hidden_activation" : "hidden_act", "gelu_pytorch_tanh");
  spec.post_norms = true;
  // HF multiplies by sqrt(hidden) held in a float32 tensor, then in the activation dtype (float32 here).
  spec.embed_scale = static_cast<float>(std::sqrt(static_cast<double>(c.hidden_size)));
  spec.attn_scale =
      static_cast<float>(1.0 / std::sqrt(f.positive_number("query_pre_attn_scalar", static_cast<double>(c.head_dim))));
  spec.final_softcap = static_cast<float>(f.positive_number("final_logit_softcapping", 0));
  spec.qkv_bias = spec.out_bias = f.boolean("attention_bias", false);
  reject_enabled(f, "use_bidirectional_attention", family);
  return spec;
}

ArchSpec describe_gemma2(const json& j, const ModelConfig& c, const std::string& source) {
  JsonFields f(j, source);
  ArchSpec spec = describe_gemma("gemma2", j, c, source);
  spec.attn_softcap = static_cast<float>(f.positive_number("attn_logit_softcapping", 0));
  if (f.has("layer_types")) {
    read_layer_types(f, c, false, spec);
  } else {  // transformers' default: even layers slide, odd layers attend globally
    for (int64_t i = 0; i < c.layers; i += 2)
      spec.layers[static_cast<size_t>(i)].sliding_window = f.positive_int("sliding_window");
  }
  return spec;
}

// Gemma 3 keeps RoPE parameters per layer type: {"sliding_attention": {...}, "full_attention": {...}};
// older files have rope_theta (global), rope_local_base_freq (local) and rope_scaling (global).
// normalize_gemma3 makes the global parameters ModelConfig::rope; the local ones are read here.
ArchSpec describe_gemma3(const json& j, const ModelConfig& c, const std::string& source) {
  JsonFields f(j, source);
  ArchSpec spec = describe_gemma("gemma3", j, c, source);
  spec.qk_norm = QkNorm::PerHead;  // Gemma 3 ignores attn_logit_softcapping (transformers passes none)
  json local = json::object();
  if (f.has(kByLayerType)) {
    local = JsonFields(f.object(kByLayerType), source + ": rope_parameters").object("sliding_attention");
  } else {
    local["rope_theta"] = f.positive_number("rope_local_base_freq", 10000.0);
  }
  local.emplace("rope_theta", 10000.0);
  spec.local_rope = parse_rope_parameters(local, json::object(), source + ": sliding_attention RoPE");
  if (f.has("layer_types")) {
    read_layer_types(f, c, false, spec);
  } else {  // every sliding_window_pattern-th layer is global
    const int64_t pattern = f.positive_int("sliding_window_pattern", 6);
    for (int64_t i = 0; i < c.layers; ++i) {
      if ((i + 1) % pattern != 0) spec.layers[static_cast<size_t>(i)] = {f.positive_int("sliding_window"), true};
    }
  }
  return spec;
}

void normalize_gemma3(json& j) {
  auto& params = j["rope_parameters"];
  if (params.is_object() && params.contains("full_attention")) {
    j[kByLayerType] = params;
    params = params["full_attention"];
    if (params.is_object() && !params.contains("rope_theta")) params["rope_theta"] = 1000000.0;
  } else {
    if (params.is_null()) j.erase("rope_parameters");
    if (!j.contains("rope_theta")) j["rope_theta"] = 1000000.0;
  }
  if (!j.contains("tie_word_embeddings")) j["tie_word_embeddings"] = true;
}

void normalize_gemma2(json& j) {
  if (!j.contains("tie_word_embeddings")) j["tie_word_embeddings"] = true;
}

WeightNames gemma_names(bool qk_norm) {
  WeightNames n = llama_names();
  n.post_attn_norm = "model.layers.{layer}.post_attention_layernorm.weight";
  n.mlp_norm = "model.layers.{layer}.pre_feedforward_layernorm.weight";
  n.post_mlp_norm = "model.layers.{layer}.post_feedforward_layernorm.weight";
  if (!qk_norm) n.q_norm = n.k_norm = "";
  return n;
}

const WeightNames kGemma2Names = gemma_names(false);
const WeightNames kGemma3Names = gemma_names(true);

}  // namespace

const ArchFamily& gemma2() {
  static const ArchFamily family{"gemma2", normalize_gemma2, describe_gemma2, &kGemma2Names};
  return family;
}

const ArchFamily& gemma3() {
  static const ArchFamily family{"gemma3_text", normalize_gemma3, describe_gemma3, &kGemma3Names};
  return family;
}

}  // namespace nanoserve::arch
