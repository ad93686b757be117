// ModelConfig: the hyperparameters of a decoder, read from config.json. Family-specific options
// (activation, biases, ...) are read by the family's description in model/arch/.
#pragma once

#include <cstdint>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

namespace nanoserve {

enum class RopeScaling {
  None,    // "default": inv_freq = theta^(-2i/head_dim)
  Linear,  // positions divided by factor
  Llama3,  // low frequencies divided by factor, a smooth band between, high frequencies kept
};

struct RopeConfig {
  double theta = 10000.0;        // rope_theta: base of the rotary frequencies
  RopeScaling scaling = RopeScaling::None;
  double factor = 1.0;           // linear, llama3: context extension factor
  double low_freq_factor = 1.0;  // llama3: wavelengths above original_max / low_freq_factor are scaled
  double high_freq_factor = 4.0; // llama3: wavelengths below original_max / high_freq_factor are kept
  int64_t original_max_positions = 0;  // llama3: context length the model was pre-trained with
};

struct ModelConfig {
  std::string model_type;         // Hugging Face model_type: selects the family in model/arch/
  int64_t hidden_size = 0;        // width of the residual stream
  int64_t intermediate_size = 0;  // inner width of the MLP
  int64_t layers = 0;             // decoder blocks
  int64_t heads = 0;              // query heads
  int64_t kv_heads = 0;           // key/value heads; heads / kv_heads queries share one (GQA)
  int64_t head_dim = 0;           // explicit, or hidden_size / heads
  int64_t vocab_size = 0;
  int64_t max_positions = 0;      // max_position_embeddings: the longest context
  double norm_eps = 1e-6;         // rms_norm_eps
  bool tied_embeddings = false;   // tie_word_embeddings: the LM head is the embedding matrix
  RopeConfig rope;
  std::optional<int64_t> bos_token_id;
  std::vector<int64_t> eos_token_ids;
};

// source names the file in error messages.
ModelConfig parse_model_config(const nlohmann::json& j, const std::string& source);
ModelConfig read_model_config(const std::string& path);

// Parses rope_parameters (transformers 5) or rope_theta + rope_scaling (earlier versions).
RopeConfig parse_rope_config(const nlohmann::json& j, const std::string& source);

// bos/eos from generation_config.json when present, else from config.json (already in cfg).
void apply_generation_config(ModelConfig& cfg, const std::string& path);

}  // namespace nanoserve
