// The vocabulary of the forward pass that every backend speaks and the model describes itself in:
// a linear layer, a norm and its kind, an activation, attention's parameters. Weights are
// TensorViews in host memory with a handle, their WeightId; the backends decide how to run them
// (backend/cpu/ops.h, backend/cuda/).
#pragma once

#include <cstdint>

#include "formats/tensor_view.h"

namespace nanoserve {

// A weight's handle: its index among the Linears (or Norms) of the WeightSet a backend was made
// with, by which the backend finds what it prepared for it (a device copy, a repacked layout)
// without looking at the view's address. -1: not given to a backend (an absent weight, or a test's
// own view, which only the CPU backend can run).
using WeightId = int32_t;

// A linear layer: weight [out, in], or [in, out] when in_out (GPT-2's Conv1D), in which case the
// view may be a column range of a wider matrix (row_stride). bias [out] is optional (data == nullptr).
struct Linear {
  TensorView weight, bias;
  bool in_out = false;
  WeightId id = -1;
  int64_t out_features() const { return weight.shape[in_out ? 1 : 0]; }
  int64_t in_features() const { return weight.shape[in_out ? 0 : 1]; }
};

// A normalization's parameters; bias only for LayerNorm.
struct Norm {
  TensorView weight, bias;
  WeightId id = -1;
};

enum class NormKind {
  Rms,         // x / rms(x) * w
  RmsPlusOne,  // x / rms(x) * (1 + w)   (Gemma)
  Layer,       // (x - mean) / std * w + b   (GPT-2)
};

enum class Activation {
  Silu,      // x * sigmoid(x)
  GeluTanh,  // 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)))  (gelu_pytorch_tanh, gelu_new)
};

// One layer's attention, as the model's config and family set it.
struct AttentionParams {
  int64_t heads, kv_heads, head_dim;
  float scale;         // multiplies q.k
  float softcap = 0;   // > 0: scores = softcap * tanh(scores / softcap)
  int64_t window = 0;  // > 0: a query at position p sees keys at (p - window, p]
};

}  // namespace nanoserve
