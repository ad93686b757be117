// Architectures are data: a family is a description (what the forward pass varies on, and the
// names of its weights on disk), not a forward function. model/arch/ holds one file per family
// and registry.cpp the explicit list of them.
#pragma once

#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "backend/ops.h"
#include "model/config.h"
#include "model/rope.h"

namespace nanoserve {

enum class MlpKind {
  Gated,  // down(act(gate(x)) * up(x))
  Plain,  // down(act(up(x)))   (GPT-2: c_fc, c_proj)
  Moe,    // a softmax router picks top_k gated experts per token, weighted by router probability
};

enum class QkNorm {
  None,
  PerHead,  // a norm over each head's head_dim values of q and k (Qwen3, Gemma 3)
  Full,     // a norm over the whole q and k projections (OLMoE)
};

struct MoeSpec {
  int64_t experts = 0, top_k = 0;
  bool norm_topk_prob = false;  // renormalize the top-k probabilities to sum to 1
};

// What differs between layers of one model.
struct LayerSpec {
  int64_t sliding_window = 0;  // > 0: attend to the last sliding_window positions only
  bool local_rope = false;     // use ArchSpec::local_rope (Gemma 3 sliding layers)
};

// What the forward pass needs to know beyond ModelConfig.
struct ArchSpec {
  std::string family;  // e.g. "llama"
  NormKind norm = NormKind::Rms;
  Activation activation = Activation::Silu;
  MlpKind mlp = MlpKind::Gated;
  QkNorm qk_norm = QkNorm::None;
  MoeSpec moe;
  bool qkv_bias = false;                     // biases on q, k, v (Qwen2, GPT-2)
  bool out_bias = false;                     // bias on o (GPT-2)
  bool mlp_bias = false;                     // biases on the MLP projections (GPT-2)
  bool post_norms = false;                   // norms on the attention and MLP outputs before the residual add (Gemma)
  bool rope = true;                          // rotary positions; false: learned position embeddings (GPT-2)
  float embed_scale = 1.0f;                  // embeddings are multiplied by this (Gemma: sqrt(hidden) in float32)
  float attn_scale = 0.0f;                   // multiplies q.k; 1/sqrt(head_dim) unless the family says otherwise
  bool attn_scale_by_layer = false;          // GPT-2 option: attn_scale / (layer + 1)
  float attn_softcap = 0.0f;                 // > 0: scores = cap * tanh(scores / cap) (Gemma 2)
  float final_softcap = 0.0f;                // > 0: the same on the logits (Gemma 2/3)
  float clip_qkv = 0.0f;                     // > 0: q, k, v clamped to [-clip, clip] (OLMoE option)
  RopePairs rope_pairs = RopePairs::Halves;  // the q/k layout of the checkpoint's rows
  std::vector<LayerSpec> layers;
  std::optional<RopeConfig> local_rope;
};

// Names of the weights in a checkpoint (a family's Hugging Face names, or GGUF's, derived from them).
// "{layer}" and "{expert}" stand for indices; an empty name means the family has no such tensor. A
// fused name (qkv, gate_up) replaces the separate ones and is split by views at load.
struct WeightNames {
  std::string embed, position_embed, final_norm, final_norm_bias, lm_head;
  std::string attn_norm, attn_norm_bias;
  std::string q, k, v, qkv, q_bias, k_bias, v_bias, qkv_bias;
  std::string q_norm, k_norm;
  std::string o, o_bias, post_attn_norm;
  std::string mlp_norm, mlp_norm_bias;
  std::string gate, up, gate_up, up_bias, down, down_bias, post_mlp_norm;
  std::string router, expert_gate, expert_up, expert_down;
  bool in_out = false;                        // linear weights stored [in, out] (GPT-2 Conv1D)
  bool experts_stacked = false;               // expert_* name one [experts, out, in] tensor per layer
  std::string optional_prefix;                // e.g. "transformer.": some checkpoints omit it
  std::vector<std::string> ignored_suffixes;  // buffers some checkpoints carry that are not weights
};

struct ArchFamily {
  std::string_view model_type;  // config.json's model_type
  // Renames keys to the Llama spelling and fills family defaults, before ModelConfig is parsed.
  void (*normalize_config)(nlohmann::json& config_json);
  // Reads the family's own options; throws Error for options it does not support.
  ArchSpec (*describe)(const nlohmann::json& config_json, const ModelConfig& config, const std::string& source);
  const WeightNames* names;
};

// The GGUF names (llama.cpp's) of the tensors a family has under `hf` names.
WeightNames gguf_weight_names(const WeightNames& hf);

// The family for a model_type; throws Error listing the supported ones.
const ArchFamily& find_family(const std::string& model_type);
std::vector<std::string_view> supported_model_types();

}  // namespace nanoserve
