// The CPU backend: the kernels of backend/cpu/ops.h on host memory, threaded by the global pool.
#pragma once

#include <memory>

#include "backend/backend.h"

namespace nanoserve {

std::unique_ptr<Backend> make_cpu_backend();

}  // namespace nanoserve
