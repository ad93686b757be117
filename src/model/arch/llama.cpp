// Llama 2/3/3.2, TinyLlama and other LlamaForCausalLM checkpoints; Mistral is the same with a
// sliding window on every layer.
#include "model/arch/common.h"

namespace nanoserve::arch {

namespace {

ArchSpec describe_llama_like(const std::string& family, const nlohmann::json& j, const ModelConfig& c,
                             const std::string& source) {
  JsonFields f(j, source);
  ArchSpec spec = base_spec(family, c);
  spec.activation = parse_activation(f, "hidden_act", "silu");
  spec.qkv_bias = spec.out_bias = f.boolean("attention_bias", false);
  reject_enabled(f, "mlp_bias", family);
  read_layer_types(f, c, /*all_slide_by_default=*/family == "mistral", spec);
  return spec;
}

ArchSpec describe_llama(const nlohmann::json& j, const ModelConfig& c, const std::string& source) {
  return describe_llama_like("llama", j, c, source);
}

ArchSpec describe_mistral(const nlohmann::json& j, const ModelConfig& c, const std::string& source) {
  return describe_llama_like("mistral", j, c, source);
}

const WeightNames kNames = llama_names();

}  // namespace

const ArchFamily& llama() {
  static const ArchFamily family{"llama", nullptr, describe_llama, &kNames};
  return family;
}

const ArchFamily& mistral() {
  static const ArchFamily family{"mistral", nullptr, describe_mistral, &kNames};
  return family;
}

}  // namespace nanoserve::arch
