#include "backend/cuda/device_weights.h"

#include <cuda_runtime.h>

#include <cstring>

#include "backend/cpu/ops.h"
#include "backend/cuda/check.h"
#include "formats/dtype.h"

namespace nanoserve::cuda {

namespace {

WeightType device_type(DType dtype) {
  if (dtype == DType::F32) return WeightType::F32;
  if (dtype == DType::F16) return WeightType::F16;
  return WeightType::BF16;  // bf16 as stored; quantized types widened to it
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

DeviceWeights::DeviceWeights(const WeightSet& weights) {
  try {
    for (const TensorView& table : weights.tables) add_matrix(table, false);
    for (const Norm& norm : weights.norms) add_norm(norm);
    for (const Linear& linear : weights.linears) add_linear(linear);
  } catch (...) {
    for (void* p : allocations_) cudaFree(p);
    throw;
  }
}

DeviceWeights::~DeviceWeights() {
  for (void* p : allocations_) cudaFree(p);
}

const Matrix& DeviceWeights::matrix(const TensorView& view) const {
  auto it = matrices_.find(view.data);
  if (it == matrices_.end()) fail("{}: not on the GPU", view.name);
  return it->second;
}

const float* DeviceWeights::vector(const TensorView& view) const {
  if (!view.data) return nullptr;
  auto it = vectors_.find(view.data);
  if (it == vectors_.end()) fail("{}: not on the GPU", view.name);
  return it->second;
}

void DeviceWeights::add_linear(const Linear& linear) {
  if (!linear.weight.data) return;
  add_matrix(linear.weight, linear.in_out);
  add_vector(linear.bias);
}

void DeviceWeights::add_norm(const Norm& norm) {
  add_vector(norm.weight);
  add_vector(norm.bias);
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

void DeviceWeights::add_matrix(const TensorView& view, bool in_out) {
  if (matrices_.count(view.data)) return;  // a tied head shares the embedding's copy
  const WeightType type = device_type(view.dtype);
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
  matrices_[view.data] = m;
}

void DeviceWeights::add_vector(const TensorView& view) {
  if (!view.data || vectors_.count(view.data)) return;
  std::vector<float> host(static_cast<size_t>(view.numel()));
  cpu::load_row(view, 0, host.data());
  vectors_[view.data] = static_cast<const float*>(upload(host.data(), host.size() * sizeof(float), view.name));
}

}  // namespace nanoserve::cuda
