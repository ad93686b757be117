// The weights of a decoder, as views into the checkpoint's mapped files, under canonical names.
// Nothing here knows a file format; the loader fills these from WeightNames.
#pragma once

#include <string>
#include <vector>

#include "backend/ops.h"
#include "backend/weight_set.h"
#include "formats/tensor_view.h"
#include "model/arch.h"
#include "model/config.h"

namespace nanoserve {

struct Expert {
  Linear gate, up, down;  // [intermediate, hidden], [intermediate, hidden], [hidden, intermediate]
};

struct LayerWeights {
  Norm attn_norm;       // [hidden]
  Linear q;             // [heads * head_dim, hidden]
  Linear k, v;          // [kv_heads * head_dim, hidden]
  Norm q_norm, k_norm;  // [head_dim] per head, or [heads * head_dim] / [kv_heads * head_dim] whole
  Linear o;             // [hidden, heads * head_dim]
  Norm post_attn_norm;  // [hidden]
  Norm mlp_norm;        // [hidden]
  Linear gate, up;      // [intermediate, hidden] (a plain MLP has only up)
  Linear down;          // [hidden, intermediate]
  Norm post_mlp_norm;   // [hidden]
  Linear router;        // [experts, hidden]
  std::vector<Expert> experts;
};

struct Weights {
  TensorView embed;           // [vocab, hidden]
  TensorView position_embed;  // [max_positions, hidden] (learned positions only)
  std::vector<LayerWeights> layers;
  Norm final_norm;  // [hidden]
  Linear lm_head;   // [vocab, hidden]; the same bytes as embed when tied
};

// A layer's products: q, k, v, o, the MLP's and the router, then each expert's (absent ones too,
// which have no data).
std::vector<const Linear*> linears_of(const LayerWeights& layer);

// Gives every present Linear and Norm its handle (backend/ops.h), once the views are bound.
void number_weights(Weights& weights);
// Every weight, as a backend prepares them when it is made (backend/weight_set.h); numbered.
WeightSet weight_set(const Weights& weights);

// One tensor on disk and where it goes. A fused tensor has several parts, split along its output
// dimension (rows of [out, in], columns of [in, out], elements of a bias), or, stacked [count, out,
// in] (GGUF experts), one part per slice.
struct WeightSlot {
  struct Part {
    std::string name;  // canonical name of the view
    TensorView* target;
    int64_t size;
  };
  std::string name;          // canonical, e.g. "layers.3.attn.k"
  std::string file_name;     // e.g. "model.layers.3.self_attn.k_proj.weight"
  Shape shape;               // on disk
  std::string shape_reason;  // the config fields behind the shape, e.g. "num_key_value_heads=4, head_dim=64"
  std::vector<Part> parts;
  bool in_out = false;  // 2-D and stored [in, out]
};

// Every weight, listed exactly once: the same list drives loading, validation and parameter counts.
// A tied LM head is not listed (it aliases the embedding).
std::vector<WeightSlot> weight_slots(Weights& weights, const ModelConfig& config, const ArchSpec& arch,
                                     const WeightNames& names);

}  // namespace nanoserve
