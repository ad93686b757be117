// CUDA and cuBLAS status codes to Error exceptions naming what failed.
#pragma once

#include <cublas_v2.h>
#include <cuda_runtime.h>

#include "util/error.h"

namespace nanoserve::cuda {

inline void check(cudaError_t status, const char* what) {
  if (status != cudaSuccess) fail("CUDA: {}: {}", what, cudaGetErrorString(status));
}

inline void check(cublasStatus_t status, const char* what) {
  if (status != CUBLAS_STATUS_SUCCESS) fail("cuBLAS: {}: {}", what, cublasGetStatusString(status));
}

}  // namespace nanoserve::cuda
