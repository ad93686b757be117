#include "backend/cpu/reduced_dot.h"

#include <vector>

#include "backend/cpu/kernel_level.h"
#include "backend/cpu/reduced_tiles.h"
#include "backend/cpu/tiling.h"
#include "formats/dtype.h"
#include "util/error.h"

namespace nanoserve::cpu {

namespace {

// At the AVX-512 kernel level (whose CPUs all have F16C).
bool vnni_available() {
  static const bool available = [] {
    __builtin_cpu_init();
    return kernel_level() == KernelLevel::Avx512 && __builtin_cpu_supports("avx512vnni");
  }();
  return available;
}
bool bf16_available() {
  static const bool available = [] {
    __builtin_cpu_init();
    return kernel_level() == KernelLevel::Avx512 && __builtin_cpu_supports("avx512bf16");
  }();
  return available;
}

// One way of multiplying a weight type: how its activations are quantized, and its tile kernel.
template <class Act>
struct Method {
  int64_t act_blocks;  // Act blocks per activation row
  void (*quantize)(const float* x, int64_t k, Act* out);
  tiles::RowsKernel rows;
  int64_t weight_blocks;  // blocks per weight row
};

template <class Act>
void run(const float* x, int64_t rows, const TensorView& w, const Method<Act>& method, float* out) {
  const int64_t n = w.shape[0], k = w.shape[1];
  const std::vector<Act> xq = tiles::round_rows(x, rows, k, method.act_blocks, method.quantize);
  const int64_t stride_bytes = dtype_bytes(w.dtype, w.stride()), row_bytes = method.act_blocks * sizeof(Act);
  const auto* xq_bytes = reinterpret_cast<const uint8_t*>(xq.data());
  each_tile_and_block(n, rows, [&](int64_t r0, int64_t count, int64_t r_begin, int64_t block) {
    const uint8_t* wr[kRowTile];
    for (int64_t i = 0; i < count; ++i) wr[i] = w.data + (r0 + i) * stride_bytes;
    method.rows(wr, static_cast<int>(count), xq_bytes + r_begin * row_bytes, row_bytes, block, method.weight_blocks, k,
                out + r_begin * n + r0, n);
  });
}

}  // namespace

bool takes_reduced_dot(DType dtype) {
  if (!reduced_precision_products()) return false;
  switch (dtype) {
    case DType::BF16: return bf16_available();
    case DType::Q8_0:
    case DType::Q4_0:
    case DType::Q4_K:
    case DType::Q6_K: return vnni_available();
    default: return false;
  }
}

void multiply_reduced(const float* x, int64_t rows, const TensorView& w, float* out) {
  const int64_t k = w.shape[1], pairs = (k / 32 + 1) / 2, halves = (k + 31) / 32;
  switch (w.dtype) {
    case DType::BF16:
      return run<tiles::Bf16Block>(x, rows, w, {halves, tiles::round_to_bf16, tiles::bf16_rows, halves}, out);
    case DType::Q8_0:
      return run<tiles::Q8Pair>(x, rows, w, {pairs, tiles::quantize_q8_pairs, tiles::q8_0_rows, k / 32}, out);
    case DType::Q4_0:
      return run<tiles::Q8Pair>(x, rows, w, {pairs, tiles::quantize_q8_pairs, tiles::q4_0_rows, k / 32}, out);
    case DType::Q4_K:
      return run<tiles::Q8KBlock>(x, rows, w, {k / 256, tiles::quantize_q8_k, tiles::q4_k_rows, k / 256}, out);
    case DType::Q6_K:
      return run<tiles::Q8KBlock>(x, rows, w, {k / 256, tiles::quantize_q8_k, tiles::q6_k_rows, k / 256}, out);
    default: fail("{}: no reduced-precision kernel for {} weights", w.name, dtype_name(w.dtype));
  }
}

}  // namespace nanoserve::cpu
