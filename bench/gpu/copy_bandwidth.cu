// The GPU's memory bandwidth as a device-to-device copy of a 4 GiB buffer (bytes read plus bytes
// written, per second): the roofline that memory-bound decode is measured against. Prints GB/s.
#include <cuda_runtime.h>

#include <cstdio>

int main() {
  const size_t bytes = size_t{4} << 30;
  void *src = nullptr, *dst = nullptr;
  if (cudaMalloc(&src, bytes) != cudaSuccess || cudaMalloc(&dst, bytes) != cudaSuccess) {
    std::fprintf(stderr, "cannot allocate 2 x 4 GiB on the GPU\n");
    return 1;
  }
  cudaMemset(src, 1, bytes);
  cudaEvent_t start, stop;
  cudaEventCreate(&start);
  cudaEventCreate(&stop);
  for (int i = 0; i < 3; ++i) cudaMemcpy(dst, src, bytes, cudaMemcpyDeviceToDevice);  // warm-up
  const int reps = 20;
  cudaEventRecord(start);
  for (int i = 0; i < reps; ++i) cudaMemcpy(dst, src, bytes, cudaMemcpyDeviceToDevice);
  cudaEventRecord(stop);
  cudaEventSynchronize(stop);
  float ms = 0;
  cudaEventElapsedTime(&ms, start, stop);
  if (cudaGetLastError() != cudaSuccess) {
    std::fprintf(stderr, "the copy failed\n");
    return 1;
  }
  std::printf("%.0f\n", 2.0 * static_cast<double>(bytes) * reps / (ms / 1e3) / 1e9);
  return 0;
}
