// ModelConfig: the hyperparameters of a decoder, read from config.json. Family-specific options
// (activation, biases, ...) are read by the family's description in model/arch/.
#pragma once

#include <cstdint>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "backend/kv_shape.h"

namespace nanoserve {

enum class RopeScaling {
  None,      // "default": inv_freq = theta^(-2i/rotary_dim)
  Linear,    // positions divided by factor
  Llama3,    // low frequencies divided by factor, a smooth band between, high frequencies kept
  Yarn,      // interpolation below a ramp of dimensions, extrapolation above; cos/sin scaled
  Dynamic,   // NTK: theta grows with the sequence length once it passes max_position_embeddings
  LongRope,  // per-dimension factors, short or long by sequence length; cos/sin scaled (Phi-3)
  Factors,   // per-frequency divisors given as numbers (GGUF's rope_freqs, llama3 precomputed)
};

struct RopeConfig {
  double theta = 10000.0;  // rope_theta: base of the rotary frequencies
  RopeScaling scaling = RopeScaling::None;
  double factor = 1.0;                          // linear, llama3, yarn, dynamic: context extension factor
  double low_freq_factor = 1.0;                 // llama3: wavelengths above original_max / low_freq_factor are scaled
  double high_freq_factor = 4.0;                // llama3: wavelengths below original_max / high_freq_factor are kept
  int64_t original_max_positions = 0;           // llama3, yarn, longrope: context length of pre-training
  double beta_fast = 32, beta_slow = 1;         // yarn: rotation counts bounding the ramp
  double mscale = 0, mscale_all_dim = 0;        // yarn: optional attention-factor shaping (DeepSeek)
  bool truncate = true;                         // yarn: round the ramp bounds to whole dimensions
  std::optional<double> attention_factor = {};  // yarn, longrope: cos/sin scale; derived when absent
  std::vector<double> short_factor = {}, long_factor = {};  // longrope: one divisor per frequency
  std::vector<double> freq_factors = {};                    // factors: one divisor per frequency
  double partial_rotary_factor = 1.0;                       // fraction of head_dim that is rotated
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
  int64_t max_positions = 0;     // max_position_embeddings: the longest context
  double norm_eps = 1e-6;        // rms_norm_eps
  bool tied_embeddings = false;  // tie_word_embeddings: the LM head is the embedding matrix
  bool has_lm_head = true;       // false: an embedding model's base weights alone, which make no logits
  RopeConfig rope;
  // An embedding model trained so that a vector's leading dimensions are an embedding too
  // (is_matryoshka, or matryoshka_dimensions listing the widths): the API's `dimensions` needs it.
  bool matryoshka = false;
  std::vector<int64_t> matryoshka_dimensions;  // empty: any width up to hidden_size
  std::optional<int64_t> bos_token_id;
  std::vector<int64_t> eos_token_ids;

  KvShape kv_shape() const { return {layers, kv_heads, head_dim}; }
};

// source names the file in error messages.
ModelConfig parse_model_config(const nlohmann::json& j, const std::string& source);
ModelConfig read_model_config(const std::string& path);

// Parses rope_parameters (transformers 5) or rope_theta + rope_scaling (earlier versions) from the
// top level of config.json.
RopeConfig parse_rope_config(const nlohmann::json& j, const std::string& source);
// Parses one RoPE parameter object; `top` is config.json, for the keys older files keep at top level.
RopeConfig parse_rope_parameters(const nlohmann::json& params, const nlohmann::json& top, const std::string& source);

// bos/eos from generation_config.json when present, else from config.json (already in cfg).
void apply_generation_config(ModelConfig& cfg, const std::string& path);

}  // namespace nanoserve
