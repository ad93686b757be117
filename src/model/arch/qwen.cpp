// Qwen2/2.5 (q/k/v biases) and Qwen3 (per-head q/k RMSNorm, explicit head_dim).
#include "model/arch/common.h"

namespace nanoserve::arch {

namespace {

ArchSpec describe_qwen2(const nlohmann::json& j, const ModelConfig& c, const std::string& source) {
  JsonFields f(j, source);
  ArchSpec spec = base_spec("qwen2", c);
  spec.activation = parse_activation(f, "hidden_act", "silu");
  spec.qkv_bias = true;
  // Without layer_types, use_sliding_window applies from layer max_window_layers on (transformers' rule).
  if (!f.has("layer_types") && f.boolean("use_sliding_window", false)) {
    const int64_t from = f.positive_int("max_window_layers", c.layers);
    for (int64_t i = from; i < c.layers; ++i)
      spec.layers[static_cast<size_t>(i)].sliding_window = f.positive_int("sliding_window");
  } else {
    read_layer_types(f, c, false, spec);
  }
  return spec;
}

ArchSpec describe_qwen3(const nlohmann::json& j, const ModelConfig& c, const std::string& source) {
  JsonFields f(j, source);
  ArchSpec spec = base_spec("qwen3", c);
  spec.activation = parse_activation(f, "hidden_act", "silu");
  spec.qkv_bias = spec.out_bias = f.boolean("attention_bias", false);
  spec.qk_norm = QkNorm::PerHead;
  read_layer_types(f, c, false, spec);
  return spec;
}

const WeightNames kNames = llama_names();

}  // namespace

const ArchFamily& qwen2() {
  static const ArchFamily family{"qwen2", nullptr, describe_qwen2, &kNames};
  return family;
}

const ArchFamily& qwen3() {
  static const ArchFamily family{"qwen3", nullptr, describe_qwen3, &kNames};
  return family;
}

}  // namespace nanoserve::arch
