// Matrix-vector products for decode: a few activation rows against a weight matrix, bound by the
// weight bytes read. W warps share an output feature, each streaming every W-th 16-byte piece of
// its weight row once with one accumulator per activation row; W grows for matrices of few rows so
// that every multiprocessor has loads in flight. A row's sum runs in the same order whatever the
// number of activation rows. The float activations are rounded to the weight type as they are
// read: the products are those of cuBLAS on converted activations, without the conversion pass.
#include <type_traits>

#include "backend/cuda/common.cuh"

namespace nanoserve::cuda {
namespace {

constexpr int kWarps = 8;          // warps per block
constexpr int64_t kMinBlocks = 512;  // about four blocks per multiprocessor of an H100/H200

// An activation as the weight type would hold it.
template <typename T>
__device__ inline float rounded(float x) {
  if constexpr (std::is_same_v<T, __nv_bfloat16>) return __bfloat162float(__float2bfloat16(x));
  if constexpr (std::is_same_v<T, __half>) return __half2float(__float2half(x));
  return x;
}

template <typename T, int R, int W>
__global__ void __launch_bounds__(kWarps * 32)
    matvec_kernel(const float* x, const T* w, const float* bias, int64_t features, int64_t cols, float* out) {
  __shared__ float partial[kWarps][R];
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32, part = warp % W;
  const int64_t f = blockIdx.x * static_cast<int64_t>(kWarps / W) + warp / W;
  const T* row = w + f * cols;
  float acc[R] = {};
  constexpr int kVec = 16 / sizeof(T);  // elements per 16-byte load
  if (f >= features) {
    // no feature: contributes nothing
  } else if (cols % kVec == 0) {
    const int64_t vectors = cols / kVec;
#pragma unroll 4
    for (int64_t i = part * 32 + lane; i < vectors; i += W * 32) {
      const uint4 wv = __ldcs(reinterpret_cast<const uint4*>(row) + i);  // weights stream past the caches
      const T* we = reinterpret_cast<const T*>(&wv);
#pragma unroll
      for (int r = 0; r < R; ++r) {
        const float4* xv = reinterpret_cast<const float4*>(x + r * cols + i * kVec);
#pragma unroll
        for (int j = 0; j < kVec / 4; ++j) {
          const float4 xj = __ldg(xv + j);
          acc[r] += to_float(we[4 * j]) * rounded<T>(xj.x);
          acc[r] += to_float(we[4 * j + 1]) * rounded<T>(xj.y);
          acc[r] += to_float(we[4 * j + 2]) * rounded<T>(xj.z);
          acc[r] += to_float(we[4 * j + 3]) * rounded<T>(xj.w);
        }
      }
    }
  } else {
    for (int64_t i = part * 32 + lane; i < cols; i += W * 32) {
      const float wi = to_float(row[i]);
#pragma unroll
      for (int r = 0; r < R; ++r) acc[r] += wi * rounded<T>(x[r * cols + i]);
    }
  }
#pragma unroll
  for (int r = 0; r < R; ++r) {
    const float sum = warp_sum(acc[r]);
    if (lane == 0) partial[warp][r] = sum;
  }
  __syncthreads();
  if (part != 0 || lane != 0 || f >= features) return;
#pragma unroll
  for (int r = 0; r < R; ++r) {
    float sum = 0;
    for (int p = 0; p < W; ++p) sum += partial[warp + p][r];  // in a fixed order
    out[r * features + f] = sum + (bias ? bias[f] : 0.0f);
  }
}

template <typename T, int R>
void launch_rows(const float* x, const Matrix& w, const float* bias, float* out, cudaStream_t stream) {
  const auto* wt = static_cast<const T*>(w.data);
  constexpr int threads = kWarps * 32;
  // Warps per feature: the fewest that still give kMinBlocks blocks.
  if (blocks_for(w.rows, kWarps) >= kMinBlocks) {
    matvec_kernel<T, R, 1><<<blocks_for(w.rows, kWarps), threads, 0, stream>>>(x, wt, bias, w.rows, w.cols, out);
  } else if (blocks_for(w.rows, kWarps / 2) >= kMinBlocks) {
    matvec_kernel<T, R, 2><<<blocks_for(w.rows, kWarps / 2), threads, 0, stream>>>(x, wt, bias, w.rows, w.cols, out);
  } else if (blocks_for(w.rows, kWarps / 4) >= kMinBlocks) {
    matvec_kernel<T, R, 4><<<blocks_for(w.rows, kWarps / 4), threads, 0, stream>>>(x, wt, bias, w.rows, w.cols, out);
  } else {
    matvec_kernel<T, R, 8><<<blocks_for(w.rows, 1), threads, 0, stream>>>(x, wt, bias, w.rows, w.cols, out);
  }
}

template <typename T>
void launch(const float* x, int64_t rows, const Matrix& w, const float* bias, float* out, cudaStream_t stream) {
  static_assert(kMatvecRows == 2);
  if (rows == 1) {
    launch_rows<T, 1>(x, w, bias, out, stream);
  } else {
    launch_rows<T, 2>(x, w, bias, out, stream);
  }
}

}  // namespace

void matvec(const float* x, int64_t rows, const Matrix& w, const float* bias, float* out, cudaStream_t stream) {
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
