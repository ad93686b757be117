// Makes the collectives of tensor parallelism (backend/collective.h) for a set of ranks.
#pragma once

#include <memory>
#include <vector>

#include "backend/collective.h"

namespace nanoserve {

class Backend;

// One collective per rank, joining the ranks' backends (all of one kind):
// threads exchanging host memory for CPU backends, NCCL for CUDA backends.
// Throws Error when the kind has no collectives in this build (CUDA without
// NCCL).
std::vector<std::unique_ptr<Collective>> make_collectives(const std::vector<Backend*>& backends);

}  // namespace nanoserve
