// Building blocks the family descriptions share. Each family file composes these; nothing here
// knows a particular family.
#pragma once

#include <nlohmann/json.hpp>
#include <string>

#include "model/arch.h"
#include "util/json_fields.h"

namespace nanoserve::arch {

// The families, one per file in this directory; registry.cpp lists them.
const ArchFamily& llama();
const ArchFamily& mistral();
const ArchFamily& qwen2();
const ArchFamily& qwen3();
const ArchFamily& gemma2();
const ArchFamily& gemma3();
const ArchFamily& olmoe();
const ArchFamily& phi3();
const ArchFamily& gpt2();

// A Llama-style spec: RMSNorm, the given activation, gated MLP, full attention on every layer,
// attn_scale 1/sqrt(head_dim).
ArchSpec base_spec(const std::string& family, const ModelConfig& config);

// Activation from a Hugging Face activation name (hidden_act / hidden_activation).
Activation parse_activation(const JsonFields& f, const std::string& key, const std::string& fallback);

// Sliding windows per layer from `sliding_window` and `layer_types`. Without layer_types, every
// layer slides when `all_slide_by_default` and sliding_window is set, else none does.
void read_layer_types(const JsonFields& f, const ModelConfig& config, bool all_slide_by_default, ArchSpec& spec);

// Fails naming the option when config.json sets a boolean option this family does not implement.
void reject_enabled(const JsonFields& f, const std::string& key, const std::string& family);

// Hugging Face names of the Llama layout, which most families share or extend.
WeightNames llama_names();

}  // namespace nanoserve::arch
