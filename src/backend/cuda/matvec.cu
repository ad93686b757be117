// Matrix-vector products for decode: a few activation rows against a weight matrix, bound by the
// weight bytes read. W warps share an output feature, each streaming every W-th 16-byte piece of
// its weight row once with one accumulator per activation row; W grows for matrices of few rows so
// that every multiprocessor has loads in flight. A row's sum runs in the same order whatever the
// number of activation rows. The float activations are rounded to the weight type as they are
// read: the products are those of cuBLAS on converted activations, without the conversion pass.
// Up to kMaxMatvecTargets matrices that read the same activations (q, k and v; gate and up) go in
// one launch, their blocks one after another: small matrices alone leave the GPU waiting on latency.
// A gated MLP's gate and up instead share blocks, which multiply their sums into one output.
#include <type_traits>

#include "backend/cuda/common.cuh"
#include "backend/cuda/quantized.cuh"

namespace nanoserve::cuda {
namespace {

constexpr int kWarps = 8;    // warps per block
static_assert(kWarps == 8);  // the widest with_warps_per_feature gives

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
  // Gated (count 2: gate, up): out[0] = act(gate sums) * up sums, the W warps of a feature's gate
  // row followed by the W of its up row.
  bool gated;
  ActType act;
};

// acc[r] += the 16 bytes of weights wv . x[r][i * kVec, (i + 1) * kVec) for each activation row r.
template <typename T, int R>
__device__ inline void accumulate(const uint4& wv, const float* x, int64_t cols, int64_t i, float (&acc)[R]) {
  constexpr int kVec = 16 / sizeof(T);
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

// Features per block of a gated launch, whose 2 * W warps per feature fit a block for W < kWarps.
__host__ __device__ constexpr int gated_features(int w) { return w < kWarps ? kWarps / (2 * w) : 1; }

// 16-byte weight loads a lane issues before the activations are ready (wait_for_inputs), so that
// a product's first weights are on their way while the kernel before it finishes.
constexpr int kEarlyLoads = 4;

template <typename T, int R, int W>
__global__ void __launch_bounds__(kWarps * 32) matvec_kernel(const float* x, Targets<T> targets, int64_t cols) {
  __shared__ float partial[kWarps][R];
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32, part = warp % W;
  int target = 0;
  int64_t f = 0;
  if (targets.gated) {
    target = warp / W % 2;
    f = blockIdx.x * static_cast<int64_t>(gated_features(W)) + warp / (2 * W);
  } else {
    while (target + 1 < targets.count && blockIdx.x >= targets.first_block[target + 1]) ++target;
    f = (blockIdx.x - targets.first_block[target]) * static_cast<int64_t>(kWarps / W) + warp / W;
  }
  const int64_t features = targets.features[target];
  const float* bias = targets.bias[target];
  const T* row = targets.w[target] + f * cols;
  float acc[R] = {};
  constexpr int kVec = 16 / sizeof(T);  // elements per 16-byte load
  const bool vectorized = cols % kVec == 0 && f < features;
  const int64_t vectors = cols / kVec, first = part * 32 + lane, stride = W * 32;
  const auto* weights = reinterpret_cast<const uint4*>(row);
  uint4 early[kEarlyLoads];
#pragma unroll
  for (int k = 0; k < kEarlyLoads; ++k) {
    if (vectorized && first + k * stride < vectors)
      early[k] = __ldcs(weights + first + k * stride);  // streamed past the caches
  }
  wait_for_inputs();
  if (f >= features) {
    // no feature: contributes nothing
  } else if (vectorized) {
#pragma unroll
    for (int k = 0; k < kEarlyLoads; ++k) {
      if (first + k * stride < vectors) accumulate<T, R>(early[k], x, cols, first + k * stride, acc);
    }
#pragma unroll 4
    for (int64_t i = first + kEarlyLoads * stride; i < vectors; i += stride) {
      accumulate<T, R>(__ldcs(weights + i), x, cols, i, acc);
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
  if (part != 0 || lane != 0 || f >= features || (targets.gated && target != 0)) return;
  // A feature's sums, over its W warps from `from`, in a fixed order.
  const auto feature_sum = [&](int from, int r, const float* b) {
    float sum = 0;
    for (int p = 0; p < W; ++p) sum += partial[from + p][r];
    return sum + (b ? b[f] : 0.0f);
  };
#pragma unroll
  for (int r = 0; r < R; ++r) {
    float result = feature_sum(warp, r, bias);
    if (targets.gated) result = activation(targets.act, result) * feature_sum(warp + W, r, targets.bias[1]);
    targets.out[target][r * features + f] = result;
  }
}

template <typename T>
Targets<T> targets_of(const MatvecTarget* list, int count, bool gated, ActType act) {
  Targets<T> targets{};
  targets.count = count;
  targets.gated = gated;
  targets.act = act;
  for (int i = 0; i < count; ++i) {
    targets.w[i] = static_cast<const T*>(list[i].w.data);
    targets.bias[i] = list[i].bias;
    targets.out[i] = list[i].out;
    targets.features[i] = list[i].w.rows;
  }
  return targets;
}

// The blocks of a launch at w warps per feature, and (not gated) where each target's start.
template <typename T>
int64_t lay_out_blocks(Targets<T>& targets, int w) {
  if (targets.gated) return blocks_for(targets.features[0], gated_features(w));
  int64_t blocks = 0;
  for (int i = 0; i < targets.count; ++i) {
    targets.first_block[i] = blocks;
    blocks += blocks_for(targets.features[i], kWarps / w);
  }
  targets.first_block[targets.count] = blocks;
  return blocks;
}

// A gated launch gives a feature's gate and up rows W warps each, so W stops at kWarps / 2.
template <typename T, int R>
void launch_rows(const float* x, Targets<T> targets, int64_t cols, cudaStream_t stream) {
  const int w =
      warps_per_feature(targets.gated ? kWarps / 2 : kWarps, [&](int warps) { return lay_out_blocks(targets, warps); });
  const auto blocks = static_cast<unsigned>(lay_out_blocks(targets, w));
  with_warps_per_feature(w, [&](auto warps) {
    launch(matvec_kernel<T, R, decltype(warps)::value>, blocks, kWarps * 32, 0, stream, x, targets, cols);
  });
}

template <typename T>
void launch_type(const float* x, int64_t rows, const Targets<T>& targets, int64_t cols, cudaStream_t stream) {
  static_assert(kMatvecRows == 2);
  if (rows == 1) {
    launch_rows<T, 1>(x, targets, cols, stream);
  } else {
    launch_rows<T, 2>(x, targets, cols, stream);
  }
}

void launch_targets(const float* x, int64_t rows, const MatvecTarget* list, int count, bool gated, ActType act,
                    cudaStream_t stream) {
  const int64_t cols = list[0].w.cols;
  switch (list[0].w.type) {
    case WeightType::F32: return launch_type(x, rows, targets_of<float>(list, count, gated, act), cols, stream);
    case WeightType::BF16:
      return launch_type(x, rows, targets_of<__nv_bfloat16>(list, count, gated, act), cols, stream);
    case WeightType::F16: return launch_type(x, rows, targets_of<__half>(list, count, gated, act), cols, stream);
    default: return quantized_matvec(x, rows, list, count, gated, act, stream);
  }
}

}  // namespace

void matvec(const float* x, int64_t rows, const MatvecTarget* targets, int count, cudaStream_t stream) {
  if (rows == 0 || count == 0) return;
  launch_targets(x, rows, targets, count, false, ActType::Silu, stream);
}

void gated_matvec(const float* x, int64_t rows, const Matrix& gate, const float* gate_bias, const Matrix& up,
                  const float* up_bias, ActType act, float* out, cudaStream_t stream) {
  if (rows == 0) return;
  const MatvecTarget pair[] = {{gate, gate_bias, out}, {up, up_bias, nullptr}};
  launch_targets(x, rows, pair, 2, true, act, stream);
}

}  // namespace nanoserve::cuda
