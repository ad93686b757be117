// Matrix-vector products for decode: a few activation rows against a weight matrix, bound by the
// weight bytes read. W warps share an output feature, each streaming every W-th 16-byte piece of
// its weight row once with one accumulator per activation row; W grows for matrices of few rows so
// that every multiprocessor has loads in flight. A row's sum runs in the same order whatever the
// number of activation rows. The float activations are rounded to the weight type as they are
// read: the products are those of cuBLAS on converted activations, without the conversion pass.
// Up to kMaxMatvecTargets matrices that read the same activations (q, k and v; gate and up) go in
// one launch, their blocks one after another: small matrices alone leave the GPU waiting on latency.
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

// The matrices of one launch, and where each one's blocks start.
template <typename T>
struct Targets {
  const T* w[kMaxMatvecTargets];
  const float* bias[kMaxMatvecTargets];
  float* out[kMaxMatvecTargets];
  int64_t features[kMaxMatvecTargets];
  int64_t first_block[kMaxMatvecTargets + 1];  // and the launch's block count after the last
  int count;
};

template <typename T, int R, int W>
__global__ void __launch_bounds__(kWarps * 32)
    matvec_kernel(const float* x, Targets<T> targets, int64_t cols) {
  __shared__ float partial[kWarps][R];
  int target = 0;
  while (target + 1 < targets.count && blockIdx.x >= targets.first_block[target + 1]) ++target;
  const int64_t features = targets.features[target];
  const float* bias = targets.bias[target];
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32, part = warp % W;
  const int64_t f = (blockIdx.x - targets.first_block[target]) * static_cast<int64_t>(kWarps / W) + warp / W;
  const T* row = targets.w[target] + f * cols;
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
    targets.out[target][r * features + f] = sum + (bias ? bias[f] : 0.0f);
  }
}

// W warps per feature: the fewest that still give kMinBlocks blocks over all the targets.
template <typename T, int R, int W>
bool launch_with(const float* x, const MatvecTarget* list, int count, cudaStream_t stream) {
  Targets<T> targets{};
  targets.count = count;
  int64_t blocks = 0;
  for (int i = 0; i < count; ++i) {
    targets.w[i] = static_cast<const T*>(list[i].w.data);
    targets.bias[i] = list[i].bias;
    targets.out[i] = list[i].out;
    targets.features[i] = list[i].w.rows;
    targets.first_block[i] = blocks;
    blocks += blocks_for(list[i].w.rows, kWarps / W);
  }
  targets.first_block[count] = blocks;
  if (W < kWarps && blocks < kMinBlocks) return false;
  matvec_kernel<T, R, W><<<static_cast<unsigned>(blocks), kWarps * 32, 0, stream>>>(x, targets, list[0].w.cols);
  return true;
}

template <typename T, int R>
void launch_rows(const float* x, const MatvecTarget* targets, int count, cudaStream_t stream) {
  if (launch_with<T, R, 1>(x, targets, count, stream)) return;
  if (launch_with<T, R, 2>(x, targets, count, stream)) return;
  if (launch_with<T, R, 4>(x, targets, count, stream)) return;
  launch_with<T, R, 8>(x, targets, count, stream);
}

template <typename T>
void launch(const float* x, int64_t rows, const MatvecTarget* targets, int count, cudaStream_t stream) {
  static_assert(kMatvecRows == 2);
  if (rows == 1) {
    launch_rows<T, 1>(x, targets, count, stream);
  } else {
    launch_rows<T, 2>(x, targets, count, stream);
  }
}

}  // namespace

void matvec(const float* x, int64_t rows, const MatvecTarget* targets, int count, cudaStream_t stream) {
  if (rows == 0 || count == 0) return;
  switch (targets[0].w.type) {
    case WeightType::F32:
      launch<float>(x, rows, targets, count, stream);
      break;
    case WeightType::BF16:
      launch<__nv_bfloat16>(x, rows, targets, count, stream);
      break;
    case WeightType::F16:
      launch<__half>(x, rows, targets, count, stream);
      break;
  }
}

}  // namespace nanoserve::cuda
