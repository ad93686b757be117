// The CUDA backend: weights copied to a GPU (options.gpu) at start, activations and the KV cache
// in device memory, kernels from backend/cuda/*.cu and cuBLAS for the matrix products of prefill
// (or the fixed-order tensor-core kernel for all of them when batch-invariant).
#pragma once

#include <cuda_runtime.h>

#include <memory>

#include "backend/backend.h"
#include "backend/weight_set.h"

namespace nanoserve {

// Throws Error when there is no usable GPU or the weights do not fit.
std::unique_ptr<Backend> make_cuda_backend(const WeightSet& weights, const BackendOptions& options);

// The GPU and stream a CUDA backend runs on, for libraries that queue work beside its kernels
// (NCCL). Throws Error for another kind of backend.
struct CudaPlacement {
  int gpu = 0;
  cudaStream_t stream = nullptr;
};
CudaPlacement cuda_placement(Backend& backend);

}  // namespace nanoserve
