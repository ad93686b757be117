// Linear layers with half-precision weights on the tensor cores (mma.sync m16n8k16, float
// accumulation), for every batch size, summed in an order fixed by the weight's shape alone.
//
// A warp computes 16 * MT activation rows by 8 * NT features over a share of K: K is cut into
// 32-wide chunks dealt round-robin to the S warps of a feature group, each running its chunks in
// ascending order; the S partial sums are then added in slice order. S depends only on the matrix,
// never on the number of rows, and each row's products are independent of the other rows in the
// tile, so a row's output has the same bits whether it ran alone or among 255 others: batched
// greedy decoding gives the tokens of decoding alone.
//
// Within a chunk a lane loads 8 consecutive values of K (one 16-byte load) of a weight row and of
// two activation rows. That is not the fragment layout of the mma instruction, but the same
// permutation of K is applied to both operands, so each product still pairs x[m, k] with w[n, k].
#include <type_traits>

#include "backend/cuda/common.cuh"

namespace nanoserve::cuda {
namespace {

constexpr int kWarps = 8;
constexpr int kChunk = 32;            // K per chunk: two k16 products
constexpr int kUnroll = 4;            // chunks loaded before their products: loads in flight per lane
constexpr int kFeaturesPerWarp = 16;  // NT = 2 tiles of 8
constexpr int kNt = kFeaturesPerWarp / 8;

template <typename T>
__device__ inline void mma(float (&c)[4], uint32_t a0, uint32_t a1, uint32_t a2, uint32_t a3, uint32_t b0,
                           uint32_t b1) {
  if constexpr (std::is_same_v<T, __nv_bfloat16>) {
    asm("mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};"
        : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
        : "r"(a0), "r"(a1), "r"(a2), "r"(a3), "r"(b0), "r"(b1));
  } else {
    asm("mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};"
        : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
        : "r"(a0), "r"(a1), "r"(a2), "r"(a3), "r"(b0), "r"(b1));
  }
}

// 8 values of row `row` from `k` on, or zeros past the matrix (cols is a multiple of 8).
template <typename T, bool kStream>
__device__ inline uint4 load8(const T* m, int rows, int cols, int row, int k) {
  if (row >= rows || k >= cols) return make_uint4(0, 0, 0, 0);
  const auto* p = reinterpret_cast<const uint4*>(m + static_cast<int64_t>(row) * cols + k);
  return kStream ? __ldcs(p) : __ldg(p);  // weights are read once: past the caches
}

// MT: 16-row tiles of activations per warp; S: warps splitting K.
template <typename T, int MT, int S>
__global__ void __launch_bounds__(kWarps * 32)
    tensor_core_kernel(const T* x, const T* w, const float* bias, int rows, int features, int cols, float* out) {
  constexpr int kGroups = kWarps / S;
  // The S - 1 other slices' sums, for slice 0 to add: [warp][value][lane].
  __shared__ float partial[S > 1 ? kWarps : 1][MT * kNt * 4][32];
  wait_for_inputs();
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32, slice = warp % S;
  const int g = lane / 4, q = lane % 4;
  const int n0 = (blockIdx.x * kGroups + warp / S) * kFeaturesPerWarp;
  const int m0 = blockIdx.y * 16 * MT;
  const int chunks = (cols + kChunk - 1) / kChunk;
  float acc[MT][kNt][4] = {};
  for (int c0 = slice; c0 < chunks; c0 += S * kUnroll) {
    uint4 b[kUnroll][kNt];
#pragma unroll
    for (int u = 0; u < kUnroll; ++u) {
#pragma unroll
      for (int j = 0; j < kNt; ++j)
        b[u][j] = load8<T, true>(w, features, cols, n0 + 8 * j + g, (c0 + u * S) * kChunk + 8 * q);
    }
#pragma unroll
    for (int u = 0; u < kUnroll; ++u) {
      const int c = c0 + u * S;
      if (c >= chunks) break;  // the same for the whole warp
#pragma unroll
      for (int i = 0; i < MT; ++i) {
        const int r = m0 + 16 * i + g;
        const uint4 lo = load8<T, false>(x, rows, cols, r, c * kChunk + 8 * q);
        const uint4 hi = load8<T, false>(x, rows, cols, r + 8, c * kChunk + 8 * q);
#pragma unroll
        for (int j = 0; j < kNt; ++j) {
          mma<T>(acc[i][j], lo.x, hi.x, lo.y, hi.y, b[u][j].x, b[u][j].y);
          mma<T>(acc[i][j], lo.z, hi.z, lo.w, hi.w, b[u][j].z, b[u][j].w);
        }
      }
    }
  }
  if constexpr (S > 1) {
    if (slice != 0) {
#pragma unroll
      for (int i = 0; i < MT; ++i)
#pragma unroll
        for (int j = 0; j < kNt; ++j)
#pragma unroll
          for (int e = 0; e < 4; ++e) partial[warp][(i * kNt + j) * 4 + e][lane] = acc[i][j][e];
    }
    __syncthreads();
    if (slice != 0) return;
    for (int s = 1; s < S; ++s) {  // in slice order
#pragma unroll
      for (int i = 0; i < MT; ++i)
#pragma unroll
        for (int j = 0; j < kNt; ++j)
#pragma unroll
          for (int e = 0; e < 4; ++e) acc[i][j][e] += partial[warp + s][(i * kNt + j) * 4 + e][lane];
    }
  }
  // acc[i][j]: rows (g, g + 8) of tile i by features (2q, 2q + 1) of tile j.
#pragma unroll
  for (int i = 0; i < MT; ++i) {
#pragma unroll
    for (int j = 0; j < kNt; ++j) {
#pragma unroll
      for (int e = 0; e < 4; ++e) {
        const int r = m0 + 16 * i + g + (e / 2) * 8, f = n0 + 8 * j + 2 * q + e % 2;
        if (r < rows && f < features)
          out[static_cast<int64_t>(r) * features + f] = acc[i][j][e] + (bias ? bias[f] : 0.0f);
      }
    }
  }
}

// Warps splitting K: enough warps in all for a decode step to keep every multiprocessor's loads in
// flight, but at least 4 chunks each.
int k_slices(const Matrix& w) {
  const int64_t groups = (w.rows + kFeaturesPerWarp - 1) / kFeaturesPerWarp;
  const int64_t chunks = (w.cols + kChunk - 1) / kChunk;
  int slices = 1;
  while (slices < kWarps && groups * slices < 4096 && chunks >= 8 * slices) slices *= 2;
  return slices;
}

template <typename T, int MT, int S>
void launch_tiles(const void* x, int64_t rows, const Matrix& w, const float* bias, float* out, cudaStream_t stream) {
  constexpr int features_per_block = kFeaturesPerWarp * kWarps / S;
  const dim3 grid(blocks_for(w.rows, features_per_block), blocks_for(rows, 16 * MT));
  launch(tensor_core_kernel<T, MT, S>, grid, kWarps * 32, 0, stream, static_cast<const T*>(x),
         static_cast<const T*>(w.data), bias, static_cast<int>(rows), static_cast<int>(w.rows),
         static_cast<int>(w.cols), out);
}

template <typename T, int MT>
void launch_slices(const void* x, int64_t rows, const Matrix& w, const float* bias, float* out, cudaStream_t stream) {
  switch (k_slices(w)) {
    case 1: return launch_tiles<T, MT, 1>(x, rows, w, bias, out, stream);
    case 2: return launch_tiles<T, MT, 2>(x, rows, w, bias, out, stream);
    case 4: return launch_tiles<T, MT, 4>(x, rows, w, bias, out, stream);
    default: return launch_tiles<T, MT, 8>(x, rows, w, bias, out, stream);
  }
}

template <typename T>
void launch_rows(const void* x, int64_t rows, const Matrix& w, const float* bias, float* out, cudaStream_t stream) {
  if (rows <= 16) return launch_slices<T, 1>(x, rows, w, bias, out, stream);
  if (rows <= 32) return launch_slices<T, 2>(x, rows, w, bias, out, stream);
  launch_slices<T, 4>(x, rows, w, bias, out, stream);
}

}  // namespace

bool tensor_core_linear_fits(const Matrix& w) {
  return (w.type == WeightType::BF16 || w.type == WeightType::F16) && w.cols % 8 == 0 && w.rows < (int64_t{1} << 31) &&
         w.rows * w.cols < (int64_t{1} << 40);
}

void tensor_core_linear(const void* x, int64_t rows, const Matrix& w, const float* bias, float* out,
                        cudaStream_t stream) {
  if (rows == 0 || w.rows == 0) return;
  if (w.type == WeightType::BF16) {
    launch_rows<__nv_bfloat16>(x, rows, w, bias, out, stream);
  } else {
    launch_rows<__half>(x, rows, w, bias, out, stream);
  }
}

}  // namespace nanoserve::cuda
