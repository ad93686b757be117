// Matrix-vector products for decode: a few activation rows against a weight matrix, bound by the
// weight bytes read. One warp per output feature streams its weight row once with 16-byte loads
// and keeps one accumulator per activation row.
#include "backend/cuda/common.cuh"

namespace nanoserve::cuda {
namespace {

constexpr int kWarps = 8;  // output features per block

template <typename T, int R>
__global__ void __launch_bounds__(kWarps * 32)
    matvec_kernel(const T* x, const T* w, const float* bias, int64_t features, int64_t cols, float* out) {
  const int lane = threadIdx.x % 32;
  const int64_t f = blockIdx.x * static_cast<int64_t>(kWarps) + threadIdx.x / 32;
  if (f >= features) return;
  const T* row = w + f * cols;
  float acc[R] = {};
  constexpr int kVec = 16 / sizeof(T);  // elements per 16-byte load
  if (cols % kVec == 0) {
    const int64_t vectors = cols / kVec;
#pragma unroll 4
    for (int64_t i = lane; i < vectors; i += 32) {
      const uint4 wv = __ldcs(reinterpret_cast<const uint4*>(row) + i);  // weights stream past the caches
      const T* we = reinterpret_cast<const T*>(&wv);
#pragma unroll
      for (int r = 0; r < R; ++r) {
        const uint4 xv = __ldg(reinterpret_cast<const uint4*>(x + r * cols) + i);
        const T* xe = reinterpret_cast<const T*>(&xv);
#pragma unroll
        for (int j = 0; j < kVec; ++j) acc[r] += to_float(we[j]) * to_float(xe[j]);
      }
    }
  } else {
    for (int64_t i = lane; i < cols; i += 32) {
      const float wi = to_float(row[i]);
#pragma unroll
      for (int r = 0; r < R; ++r) acc[r] += wi * to_float(x[r * cols + i]);
    }
  }
#pragma unroll
  for (int r = 0; r < R; ++r) {
    const float sum = warp_sum(acc[r]);
    if (lane == 0) out[r * features + f] = sum + (bias ? bias[f] : 0.0f);
  }
}

template <typename T>
void launch(const void* x, int64_t rows, const Matrix& w, const float* bias, float* out, cudaStream_t stream) {
  const auto* xt = static_cast<const T*>(x);
  const auto* wt = static_cast<const T*>(w.data);
  const unsigned grid = blocks_for(w.rows, kWarps);
  constexpr int threads = kWarps * 32;
  switch (rows) {
#define NANOSERVE_MATVEC_CASE(R) \
  case R:                         \
    matvec_kernel<T, R><<<grid, threads, 0, stream>>>(xt, wt, bias, w.rows, w.cols, out); \
    break;
    NANOSERVE_MATVEC_CASE(1)
    NANOSERVE_MATVEC_CASE(2)
    NANOSERVE_MATVEC_CASE(3)
    NANOSERVE_MATVEC_CASE(4)
    NANOSERVE_MATVEC_CASE(5)
    NANOSERVE_MATVEC_CASE(6)
    NANOSERVE_MATVEC_CASE(7)
    NANOSERVE_MATVEC_CASE(8)
#undef NANOSERVE_MATVEC_CASE
    default:
      break;  // the caller keeps rows within kMatvecRows
  }
}

}  // namespace

void matvec(const void* x, int64_t rows, const Matrix& w, const float* bias, float* out, cudaStream_t stream) {
  if (rows == 0 || w.rows == 0) return;
  switch (w.type) {
    case WeightType::F32:
      launch<float>(x, rows, w, bias, out, stream);
      break;
    case WeightType::BF16:
      launch<__nv_bfloat16>(x, rows, w, bias, out, stream);
      break;
    case WeightType::F16:
      launch<__half>(x, rows, w, bias, out, stream);
      break;
  }
}

}  // namespace nanoserve::cuda
