// Architectures are data: a family is a description (what the forward pass varies on, and the
// names of its weights on disk), not a forward function. model/arch/ holds one file per family
// and registry.cpp the explicit list of them.
#pragma once

#include <nlohmann/json.hpp>
#include <string>
#include <string_view>
#include <vector>

#include "model/config.h"

namespace nanoserve {

enum class NormKind {
  Rms,  // x / rms(x) * w
};

enum class Activation {
  Silu,  // gated MLP: silu(gate) * up
};

// What the forward pass needs to know beyond ModelConfig.
struct ArchSpec {
  std::string family;  // e.g. "llama"
  NormKind norm = NormKind::Rms;
  Activation activation = Activation::Silu;
};

// Names of the weights in a Hugging Face checkpoint; "{}" stands for the layer index.
struct HfWeightNames {
  std::string embed, final_norm, lm_head;
  std::string attn_norm, q, k, v, o;
  std::string mlp_norm, gate, up, down;
  std::vector<std::string> ignored_suffixes;  // buffers some checkpoints carry that are not weights
};

struct ArchFamily {
  std::string_view model_type;  // config.json's model_type
  // Reads the family's own options from config.json; throws Error for options it does not support.
  ArchSpec (*describe)(const nlohmann::json& config_json, const std::string& source);
  const HfWeightNames* names;
};

// The family for a model_type; throws Error listing the supported ones.
const ArchFamily& find_family(const std::string& model_type);
std::vector<std::string_view> supported_model_types();

}  // namespace nanoserve
