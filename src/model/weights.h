// The weights of a decoder, as views into the checkpoint's mapped files, under canonical names.
// Nothing here knows a file format; the loader fills these from HfWeightNames.
#pragma once

#include <string>
#include <vector>

#include "formats/tensor_view.h"
#include "model/arch.h"
#include "model/config.h"

namespace nanoserve {

struct LayerWeights {
  TensorView attn_norm;  // [hidden]
  TensorView q;          // [heads * head_dim, hidden]
  TensorView k;          // [kv_heads * head_dim, hidden]
  TensorView v;          // [kv_heads * head_dim, hidden]
  TensorView o;          // [hidden, heads * head_dim]
  TensorView mlp_norm;   // [hidden]
  TensorView gate;       // [intermediate, hidden]
  TensorView up;         // [intermediate, hidden]
  TensorView down;       // [hidden, intermediate]
};

struct Weights {
  TensorView embed;                 // [vocab, hidden]
  std::vector<LayerWeights> layers;
  TensorView final_norm;            // [hidden]
  TensorView lm_head;               // [vocab, hidden]; the same bytes as embed when tied
};

// One weight the model needs: where it goes, what it is called on disk, the shape the config implies.
struct WeightSlot {
  std::string name;          // canonical, e.g. "layers.3.attn.k"
  std::string hf_name;       // e.g. "model.layers.3.self_attn.k_proj.weight"
  Shape shape;
  std::string shape_reason;  // the config fields behind the shape, e.g. "num_key_value_heads=4, head_dim=64"
  TensorView* tensor;
};

// Every weight, listed exactly once: the same list drives loading, validation and parameter counts.
// A tied LM head is not listed (it aliases the embedding).
std::vector<WeightSlot> weight_slots(Weights& weights, const ModelConfig& config, const HfWeightNames& names);

}  // namespace nanoserve
