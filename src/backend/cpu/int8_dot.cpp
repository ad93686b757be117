#include "backend/cpu/int8_dot.h"

#include <algorithm>
#include <vector>

#include "backend/cpu/int8_tiles.h"
#include "backend/cpu/kernel_level.h"
#include "formats/dtype.h"
#include "util/error.h"
#include "util/thread_pool.h"

namespace nanoserve::cpu {

namespace {

constexpr int64_t kRowTile = 4;           // weight rows per tile
constexpr int64_t kActivationBlock = 64;  // activation rows per pass over a thread's weight tiles, kept in cache

bool vnni_available() {
  static const bool available = [] {
    __builtin_cpu_init();
    return kernel_level() == KernelLevel::Avx512 && __builtin_cpu_supports("avx512vnni");  // AVX-512 CPUs all have F16C
  }();
  return available;
}

// One way of multiplying a weight type: how its activations are quantized, and its tile kernel.
template <class Act>
struct Method {
  int64_t act_blocks;  // Act blocks per activation row
  void (*quantize)(const float* x, int64_t k, Act* out);
  int8::RowsKernel rows;
  int64_t weight_blocks;  // blocks per weight row
};

template <class Act>
void run(const float* x, int64_t rows, const TensorView& w, const Method<Act>& method, float* out) {
  const int64_t n = w.shape[0], k = w.shape[1];
  std::vector<Act> xq(static_cast<size_t>(rows * method.act_blocks));  // [rows, k] quantized
  ThreadPool::global().parallel_for(static_cast<size_t>(rows), [&](size_t begin, size_t end) {
    for (size_t r = begin; r < end; ++r) method.quantize(x + static_cast<int64_t>(r) * k, k, xq.data() + r * method.act_blocks);
  });
  const int64_t stride_bytes = dtype_bytes(w.dtype, w.stride()), row_bytes = method.act_blocks * sizeof(Act);
  const auto* xq_bytes = reinterpret_cast<const uint8_t*>(xq.data());
  const int64_t tiles = (n + kRowTile - 1) / kRowTile;
  ThreadPool::global().parallel_for(static_cast<size_t>(tiles), [&](size_t begin, size_t end) {
    for (int64_t r_begin = 0; r_begin < rows; r_begin += kActivationBlock) {
      const int64_t block = std::min(kActivationBlock, rows - r_begin);
      for (size_t t = begin; t < end; ++t) {
        const int64_t r0 = static_cast<int64_t>(t) * kRowTile, count = std::min(kRowTile, n - r0);
        const uint8_t* wr[kRowTile];
        for (int64_t i = 0; i < count; ++i) wr[i] = w.data + (r0 + i) * stride_bytes;
        method.rows(wr, static_cast<int>(count), xq_bytes + r_begin * row_bytes, row_bytes, block, method.weight_blocks,
                    out + r_begin * n + r0, n);
      }
    }
  });
}

}  // namespace

bool takes_int8_dot(DType dtype) {
  switch (dtype) {
    case DType::Q8_0:
    case DType::Q4_0:
    case DType::Q4_K:
    case DType::Q6_K: return vnni_available();
    default: return false;
  }
}

void multiply_int8(const float* x, int64_t rows, const TensorView& w, float* out) {
  const int64_t k = w.shape[1], pairs = (k / 32 + 1) / 2;
  switch (w.dtype) {
    case DType::Q8_0: return run<int8::Q8Pair>(x, rows, w, {pairs, int8::quantize_q8_pairs, int8::q8_0_rows, k / 32}, out);
    case DType::Q4_0: return run<int8::Q8Pair>(x, rows, w, {pairs, int8::quantize_q8_pairs, int8::q4_0_rows, k / 32}, out);
    case DType::Q4_K: return run<int8::Q8KBlock>(x, rows, w, {k / 256, int8::quantize_q8_k, int8::q4_k_rows, k / 256}, out);
    case DType::Q6_K: return run<int8::Q8KBlock>(x, rows, w, {k / 256, int8::quantize_q8_k, int8::q6_k_rows, k / 256}, out);
    default: fail("{}: no int8 kernel for {} weights", w.name, dtype_name(w.dtype));
  }
}

}  // namespace nanoserve::cpu
