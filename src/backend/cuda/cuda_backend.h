// The CUDA backend: weights copied to GPU 0 at start, activations and the KV cache in device
// memory, kernels from backend/cuda/*.cu and cuBLAS for the matrix products of prefill (or the
// fixed-order tensor-core kernel for all of them when batch-invariant).
#pragma once

#include <memory>

#include "backend/backend.h"

namespace nanoserve {

// Throws Error when there is no usable GPU or the weights do not fit.
std::unique_ptr<Backend> make_cuda_backend(const Model& model, const BackendOptions& options);

}  // namespace nanoserve
