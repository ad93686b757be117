// Times the CUDA backend's linear-layer kernels on the weight shapes of Llama-3.2-1B against
// cuBLAS, over the batch sizes of decode and prefill: the fixed-order tensor-core kernel, the
// matvec kernel (up to kMatvecRows rows) and cublasGemmEx. Prints microseconds, the weight bytes
// per second (the decode limit) and TFLOP/s (the prefill limit), and the largest difference from
// cuBLAS relative to the output's largest magnitude.
//
//   gpu_linear_kernels [reps]
#include <cublas_v2.h>
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <random>
#include <vector>

#include "backend/cuda/kernels.h"

namespace {

void check(cudaError_t status, const char* what) {
  if (status != cudaSuccess) {
    std::fprintf(stderr, "%s: %s\n", what, cudaGetErrorString(status));
    std::exit(1);
  }
}

void check(cublasStatus_t status, const char* what) {
  if (status != CUBLAS_STATUS_SUCCESS) {
    std::fprintf(stderr, "%s: cuBLAS status %d\n", what, static_cast<int>(status));
    std::exit(1);
  }
}

template <typename T>
void* upload(const std::vector<T>& host) {
  void* data = nullptr;
  check(cudaMalloc(&data, host.size() * sizeof(T)), "cudaMalloc");
  check(cudaMemcpy(data, host.data(), host.size() * sizeof(T), cudaMemcpyHostToDevice), "upload");
  return data;
}

// Random bf16 values on the device, and (with `widened`) the same values as floats.
void* device_random_bf16(int64_t count, float scale, std::mt19937& rng, float** widened = nullptr) {
  std::normal_distribution<float> normal(0.0f, scale);
  std::vector<__nv_bfloat16> host(static_cast<size_t>(count));
  for (auto& v : host) v = __float2bfloat16(normal(rng));
  if (widened) {
    std::vector<float> floats(host.size());
    for (size_t i = 0; i < host.size(); ++i) floats[i] = __bfloat162float(host[i]);
    *widened = static_cast<float*>(upload(floats));
  }
  return upload(host);
}

// Mean milliseconds of `reps` runs of `run`, after one warm-up run.
template <typename Run>
double time_ms(int reps, Run&& run) {
  run();
  cudaEvent_t start, end;
  cudaEventCreate(&start);
  cudaEventCreate(&end);
  cudaEventRecord(start);
  for (int i = 0; i < reps; ++i) run();
  cudaEventRecord(end);
  check(cudaEventSynchronize(end), "running");
  float ms = 0;
  cudaEventElapsedTime(&ms, start, end);
  cudaEventDestroy(start);
  cudaEventDestroy(end);
  return ms / reps;
}

std::vector<float> download(const float* data, int64_t count) {
  std::vector<float> host(static_cast<size_t>(count));
  check(cudaMemcpy(host.data(), data, host.size() * sizeof(float), cudaMemcpyDeviceToHost), "download");
  return host;
}

double relative_difference(const std::vector<float>& a, const std::vector<float>& b) {
  double diff = 0, scale = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    diff = std::max(diff, static_cast<double>(std::fabs(a[i] - b[i])));
    scale = std::max(scale, static_cast<double>(std::fabs(b[i])));
  }
  return scale > 0 ? diff / scale : diff;
}

struct Shape {
  const char* name;
  int64_t features, cols;
};

}  // namespace

int main(int argc, char** argv) {
  using namespace nanoserve;
  const int reps = argc > 1 ? std::atoi(argv[1]) : 20;
  const Shape shapes[] = {{"q/o 2048x2048", 2048, 2048},
                          {"k/v 512x2048", 512, 2048},
                          {"gate/up 8192x2048", 8192, 2048},
                          {"down 2048x8192", 2048, 8192},
                          {"lm_head 128256x2048", 128256, 2048}};
  const int64_t batch_sizes[] = {1, 2, 4, 8, 16, 64, 256, 512, 4096};
  std::mt19937 rng(7);
  cublasHandle_t cublas;
  check(cublasCreate(&cublas), "cublasCreate");
  std::printf("%-20s %5s | %10s %8s %8s | %10s %8s | %10s | %9s %s\n", "matrix", "rows", "tensor us", "GB/s", "TFLOP/s",
              "cuBLAS us", "TFLOP/s", "matvec us", "vs cuBLAS", "row 0 as alone");
  for (const Shape& shape : shapes) {
    const cuda::Matrix w{device_random_bf16(shape.features * shape.cols, 0.02f, rng), cuda::WeightType::BF16,
                         shape.features, shape.cols};
    for (int64_t rows : batch_sizes) {
      float* x_f32 = nullptr;  // matvec reads float activations
      void* x = device_random_bf16(rows * shape.cols, 1.0f, rng, &x_f32);
      float *out = nullptr, *reference = nullptr;
      check(cudaMalloc(&out, static_cast<size_t>(rows * shape.features) * sizeof(float)), "cudaMalloc");
      check(cudaMalloc(&reference, static_cast<size_t>(rows * shape.features) * sizeof(float)), "cudaMalloc");
      const double tensor_ms = time_ms(reps, [&] { cuda::tensor_core_linear(x, rows, w, nullptr, out, nullptr); });
      // reference[rows, features] = x * W^T by cuBLAS
      const auto gemm = [&] {
        const float alpha = 1, beta = 0;
        check(cublasGemmEx(cublas, CUBLAS_OP_T, CUBLAS_OP_N, static_cast<int>(shape.features), static_cast<int>(rows),
                           static_cast<int>(shape.cols), &alpha, w.data, CUDA_R_16BF, static_cast<int>(shape.cols), x,
                           CUDA_R_16BF, static_cast<int>(shape.cols), &beta, reference, CUDA_R_32F,
                           static_cast<int>(shape.features), CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT),
              "cublasGemmEx");
      };
      const double cublas_ms = time_ms(reps, gemm);
      double matvec_ms = NAN;
      if (rows <= cuda::kMatvecRows) {
        const cuda::MatvecTarget target{w, nullptr, reference};
        matvec_ms = time_ms(reps, [&] { cuda::matvec(x_f32, rows, &target, 1, nullptr); });
        check(cudaGetLastError(), "matvec");
      }
      gemm();  // the reference last: cuBLAS's result
      check(cudaGetLastError(), "tensor_core_linear");
      const std::vector<float> got = download(out, rows * shape.features);
      const double diff = relative_difference(got, download(reference, rows * shape.features));
      // Row 0 of every batch is a fresh random row: run it alone and compare bits.
      cuda::tensor_core_linear(x, 1, w, nullptr, reference, nullptr);
      const std::vector<float> row0 = download(reference, shape.features);
      const bool same = std::equal(row0.begin(), row0.end(), got.begin(),
                                   [](float a, float b) { return std::memcmp(&a, &b, sizeof a) == 0; });
      const double weight_gb = static_cast<double>(shape.features * shape.cols * 2) / 1e9;
      const double tflop = 2.0 * static_cast<double>(rows * shape.features * shape.cols) / 1e12;
      std::printf("%-20s %5lld | %10.1f %8.0f %8.1f | %10.1f %8.1f | %10.1f | %9.1e %s\n", shape.name,
                  static_cast<long long>(rows), tensor_ms * 1e3, weight_gb / (tensor_ms * 1e-3),
                  tflop / (tensor_ms * 1e-3), cublas_ms * 1e3, tflop / (cublas_ms * 1e-3), matvec_ms * 1e3, diff,
                  same ? "same bits" : "DIFFERENT");
      cudaFree(x);
      cudaFree(x_f32);
      cudaFree(out);
      cudaFree(reference);
    }
    cudaFree(const_cast<void*>(w.data));
  }
  cublasDestroy(cublas);
  return 0;
}
