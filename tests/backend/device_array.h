// What the tests of single CUDA kernels share: whether a GPU is there, and device copies of host
// arrays.
#pragma once

#include <cuda_runtime.h>
#include <gtest/gtest.h>

#include <vector>

namespace nanoserve {

inline bool gpu_usable() {
  int devices = 0;
  return cudaGetDeviceCount(&devices) == cudaSuccess && devices > 0;
}

// A device copy of a host array, freed with it.
class DeviceArray {
 public:
  template <typename T>
  explicit DeviceArray(const std::vector<T>& host) : bytes_(host.size() * sizeof(T)) {
    EXPECT_EQ(cudaMalloc(&data_, bytes_), cudaSuccess);
    EXPECT_EQ(cudaMemcpy(data_, host.data(), bytes_, cudaMemcpyHostToDevice), cudaSuccess);
  }
  explicit DeviceArray(size_t bytes) : bytes_(bytes) { EXPECT_EQ(cudaMalloc(&data_, bytes_), cudaSuccess); }
  ~DeviceArray() { cudaFree(data_); }
  DeviceArray(const DeviceArray&) = delete;
  DeviceArray& operator=(const DeviceArray&) = delete;

  template <typename T>
  T* as() const {
    return static_cast<T*>(data_);
  }
  std::vector<float> floats() const {
    std::vector<float> host(bytes_ / sizeof(float));
    EXPECT_EQ(cudaMemcpy(host.data(), data_, bytes_, cudaMemcpyDeviceToHost), cudaSuccess);
    return host;
  }

 private:
  void* data_ = nullptr;
  size_t bytes_;
};

}  // namespace nanoserve
