// A model's weights copied to the GPU once, found again by the host view they came from. Matrices
// keep float32, bfloat16 or float16 as stored; GGUF block-quantized ones are widened to bfloat16 (the
// GPU has no quantized kernels yet) and Conv1D [in, out] ones transposed, so that every device
// matrix is [out, in]. Norm weights and biases become float32 vectors.
#pragma once

#include <cstddef>
#include <map>
#include <vector>

#include "backend/cuda/kernels.h"
#include "backend/weight_set.h"

namespace nanoserve::cuda {

class DeviceWeights {
 public:
  explicit DeviceWeights(const WeightSet& weights);  // throws Error when the GPU runs out of memory
  ~DeviceWeights();
  DeviceWeights(const DeviceWeights&) = delete;
  DeviceWeights& operator=(const DeviceWeights&) = delete;

  const Matrix& matrix(const TensorView& view) const;
  const float* vector(const TensorView& view) const;  // null for an absent (empty) view
  size_t bytes() const { return bytes_; }

 private:
  void add_linear(const Linear& linear);
  void add_norm(const Norm& norm);
  void add_matrix(const TensorView& view, bool in_out);
  void add_vector(const TensorView& view);
  void* upload(const void* host, size_t bytes, const std::string& name);

  std::map<const uint8_t*, Matrix> matrices_;
  std::map<const uint8_t*, const float*> vectors_;
  std::vector<void*> allocations_;
  size_t bytes_ = 0;
};

}  // namespace nanoserve::cuda
