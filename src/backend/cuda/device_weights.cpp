#include "backend/cuda/device_weights.h"

#include <cuda_runtime.h>

#include <cstring>

#include "backend/cpu/ops.h"
#include "backend/cuda/check.h"
#include "formats/dtype.h"

namespace nanoserve::cuda {

namespace {

// Block types the kernels decode stay as stored (quantized.cu); the other quantized ones widen to
// bf16.
WeightType device_type(DType dtype) {
  switch (dtype) {
    case DType::F32: return WeightType::F32;
    case DType::F16: return WeightType::F16;
    case DType::Q8_0: return WeightType::Q8_0;
    case DType::Q4_0: return WeightType::Q4_0;
    case DType::Q4_K: return WeightType::Q4_K;
    case DType::Q5_K: return WeightType::Q5_K;
    case DType::Q6_K: return WeightType::Q6_K;
    default: return WeightType::BF16;
  }
}

size_t type_size(WeightType type) { return type == WeightType::F32 ? 4 : 2; }

// Writes value as element i of a host array of `type`.
void store(WeightType type, float value, int64_t i, std::vector<uint8_t>& out) {
  if (type == WeightType::F32) {
    std::memcpy(out.data() + i * 4, &value, 4);
  } else {
    const uint16_t bits = type == WeightType::F16 ? float_to_f16(value) : float_to_bf16(value);
    std::memcpy(out.data() + i * 2, &bits, 2);
  }
}

}  // namespace

DeviceWeights::DeviceWeights(const WeightSet& weights) : set_(weights) {
  try {
    token_embed_ = add_matrix(weights.token_embed, false);
    if (weights.position_embed.data) position_embed_ = add_matrix(weights.position_embed, false);
    for (const Norm& norm : weights.norms) norms_.push_back({add_vector(norm.weight), add_vector(norm.bias)});
    for (const Linear& linear : weights.linears) {
      // A tied LM head is the embedding's bytes: it shares the embedding's copy.
      const bool tied =
          linear.weight.data == weights.token_embed.data && linear.weight.shape == weights.token_embed.shape;
      products_.push_back({tied ? token_embed_ : add_matrix(linear.weight, linear.in_out), add_vector(linear.bias)});
    }
  } catch (...) {
    for (void* p : allocations_) cudaFree(p);
    throw;
  }
}

DeviceWeights::~DeviceWeights() {
  for (void* p : allocations_) cudaFree(p);
}

void* DeviceWeights::upload(const void* host, size_t bytes, const std::string& name) {
  void* device = nullptr;
  if (cudaMalloc(&device, bytes) != cudaSuccess) {
    fail(
        "{}: out of GPU memory copying the weights ({:.2f} GiB placed, {:.1f} MiB more needed, {}); use a smaller "
        "or quantized model",
        name, static_cast<double>(bytes_) / (1 << 30), static_cast<double>(bytes) / (1 << 20),
        free_memory_after_failure());
  }
  allocations_.push_back(device);
  check(cudaMemcpy(device, host, bytes, cudaMemcpyHostToDevice), "copying weights to the GPU");
  bytes_ += bytes;
  return device;
}

Matrix DeviceWeights::add_matrix(const TensorView& view, bool in_out) {
  const WeightType stored = device_type(view.dtype);
  if (is_quantized(stored) && !in_out) return add_blocks(view, stored);
  const WeightType type = is_quantized(stored) ? WeightType::BF16 : stored;
  const int64_t src_rows = view.shape[0], src_cols = view.shape[1];
  Matrix m{nullptr, type, in_out ? src_cols : src_rows, in_out ? src_rows : src_cols};
  const auto bytes = static_cast<size_t>(m.rows * m.cols) * type_size(type);
  const bool as_stored = !in_out && !is_quantized(view.dtype) && view.stride() == src_cols;
  if (as_stored) {
    m.data = upload(view.data, bytes, view.name);
  } else {
    std::vector<uint8_t> host(bytes);
    std::vector<float> row(static_cast<size_t>(src_cols));
    for (int64_t r = 0; r < src_rows; ++r) {
      cpu::load_row(view, r, row.data());
      for (int64_t c = 0; c < src_cols; ++c) {
        store(type, row[static_cast<size_t>(c)], in_out ? c * src_rows + r : r * src_cols + c, host);
      }
    }
    m.data = upload(host.data(), bytes, view.name);
  }
  return m;
}

// The rows' blocks, one after another (a view of some columns of a wider matrix, a tensor-parallel
// rank's, is gathered from its rows).
Matrix DeviceWeights::add_blocks(const TensorView& view, WeightType type) {
  const Matrix m{nullptr, type, view.shape[0], view.shape[1]};
  const auto row_bytes = static_cast<size_t>(m.row_bytes());
  const auto stride_bytes = static_cast<size_t>(view.stride() / block_values(type) * block_bytes(type));
  if (stride_bytes == row_bytes) return {upload(view.data, row_bytes * m.rows, view.name), type, m.rows, m.cols};
  std::vector<uint8_t> host(row_bytes * static_cast<size_t>(m.rows));
  for (int64_t r = 0; r < m.rows; ++r)
    std::memcpy(host.data() + r * row_bytes, view.data + r * stride_bytes, row_bytes);
  return {upload(host.data(), host.size(), view.name), type, m.rows, m.cols};
}

const float* DeviceWeights::add_vector(const TensorView& view) {
  if (!view.data) return nullptr;
  std::vector<float> host(static_cast<size_t>(view.numel()));
  cpu::load_row(view, 0, host.data());
  return static_cast<const float*>(upload(host.data(), host.size() * sizeof(float), view.name));
}

}  // namespace nanoserve::cuda
