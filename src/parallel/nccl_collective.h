// NCCL collectives for ranks on CUDA backends, one GPU each, in one process. Part of the CUDA
// plugin (backend/cuda_plugin.h): the core reaches it through the plugin's entry point.
#pragma once

#include <memory>
#include <vector>

#include "parallel/collective.h"

namespace nanoserve {

// One NCCL communicator per backend, each queuing its operations on its
// backend's stream. Throws Error in a build without NCCL, or when NCCL cannot
// set the ranks up.
std::vector<std::unique_ptr<Collective>> make_nccl_collectives(const std::vector<Backend*>& backends);

}  // namespace nanoserve
