// CUDA and cuBLAS status codes to Error exceptions naming what failed.
#pragma once

#include <cublas_v2.h>
#include <cuda_runtime.h>

#include <fmt/format.h>

#include <string>

#include "util/error.h"

namespace nanoserve::cuda {

inline void check(cudaError_t status, const char* what) {
  if (status != cudaSuccess) fail("CUDA: {}: {}", what, cudaGetErrorString(status));
}

inline void check(cublasStatus_t status, const char* what) {
  if (status != CUBLAS_STATUS_SUCCESS) fail("cuBLAS: {}: {}", what, cublasGetStatusString(status));
}

// After a failed allocation: clears CUDA's sticky error and says how much memory is free, e.g.
// "3.10 of 139.72 GiB free", for the message that names what did not fit.
inline std::string free_memory_after_failure() {
  cudaGetLastError();
  size_t free = 0, total = 0;
  cudaMemGetInfo(&free, &total);
  return fmt::format("{:.2f} of {:.2f} GiB free", static_cast<double>(free) / (1 << 30),
                     static_cast<double>(total) / (1 << 30));
}

}  // namespace nanoserve::cuda
