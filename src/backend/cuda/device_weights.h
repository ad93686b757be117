// A model's weights copied to the GPU once, found again by their handles (backend/weight_set.h).
// Matrices keep float32, bfloat16 or float16 as stored, and GGUF's Q8_0, Q4_0, Q4_K, Q5_K and
// Q6_K blocks as the file has them (the kernels decode them: quantized.cu); other block types are
// widened to bfloat16 and Conv1D [in, out] matrices transposed, so that every device matrix is
// [out, in]. Norm weights and biases become float32 vectors.
#pragma once

#include <cstddef>
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

  struct Product {
    Matrix weight;
    const float* bias = nullptr;  // [weight.rows], or null
  };
  struct NormVectors {
    const float* weight = nullptr;
    const float* bias = nullptr;  // LayerNorm's, or null
  };
  const Matrix& token_embed() const { return token_embed_; }
  const Matrix& position_embed() const { return position_embed_; }
  const Product& at(const Linear& linear) const { return products_[static_cast<size_t>(set_.at(linear).id)]; }
  const NormVectors& at(const Norm& norm) const { return norms_[static_cast<size_t>(set_.at(norm).id)]; }
  size_t bytes() const { return bytes_; }

 private:
  Matrix add_matrix(const TensorView& view, bool in_out);
  Matrix add_blocks(const TensorView& view, WeightType type);
  const float* add_vector(const TensorView& view);
  void* upload(const void* host, size_t bytes, const std::string& name);

  WeightSet set_;
  Matrix token_embed_, position_embed_;
  std::vector<Product> products_;   // by handle
  std::vector<NormVectors> norms_;  // by handle
  std::vector<void*> allocations_;
  size_t bytes_ = 0;
};

}  // namespace nanoserve::cuda
