// The CPU backend: the kernels of backend/cpu/ops.h on host memory, threaded by the global pool.
#pragma once

#include <memory>

#include "backend/backend.h"
#include "backend/weight_set.h"

namespace nanoserve {

// Q8_0 product weights are interleaved into the backend's memory now (a copy the size of those
// weights); everything else is read where the model maps it.
std::unique_ptr<Backend> make_cpu_backend(const WeightSet& weights);

}  // namespace nanoserve
