// The weights a backend prepares once, when it is made (copies them to its device, repacks them for
// its kernels). The model lists them here, each Linear and Norm at the index its WeightId names, and
// the ops name them by that handle. A backend knows nothing of layers, families or the files the
// weights came from.
#pragma once

#include <vector>

#include "backend/ops.h"
#include "formats/tensor_view.h"

namespace nanoserve {

struct WeightSet {
  TensorView token_embed;       // [vocab, hidden] (a vocabulary-parallel rank's rows)
  TensorView position_embed;    // [max_positions, hidden]; learned positions only
  std::vector<Norm> norms;      // norms[i].id == i
  std::vector<Linear> linears;  // linears[i].id == i

  // The entry a handle names, which must be the caller's view: a handle out of range, or one of
  // another model's weights, throws Error.
  const Linear& at(const Linear& linear) const;
  const Norm& at(const Norm& norm) const;
};

}  // namespace nanoserve
