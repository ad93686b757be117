// The weights a backend prepares once, when it is made (copies them to its device, repacks them for
// its kernels): the model lists them here, and the backend finds each again by the view an op is
// handed. A backend knows nothing of layers, families or the files the weights came from.
#pragma once

#include <vector>

#include "backend/ops.h"
#include "formats/tensor_view.h"

namespace nanoserve {

struct WeightSet {
  std::vector<TensorView> tables;  // row lookups: the token embedding first, then learned positions
  std::vector<Norm> norms;         // every norm's gamma (and beta)
  std::vector<Linear> linears;     // every matrix product, the LM head first
};

}  // namespace nanoserve
