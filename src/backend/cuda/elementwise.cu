// Embedding, norms, activations, RoPE and row moves: the memory-bound glue between the matrix products.
#include <algorithm>
#include <type_traits>

#include "backend/cuda/common.cuh"
#include "backend/cuda/quantized.cuh"

namespace nanoserve::cuda {
namespace {

constexpr int kThreads = 256;

template <typename T>
__global__ void embed_kernel(const T* table, const int32_t* tokens, int64_t cols, float* out) {
  wait_for_inputs();
  const int64_t row = blockIdx.x;
  const int32_t token = tokens[row];
  if (token < 0) {  // a row another rank's share of the vocabulary holds
    for (int64_t i = threadIdx.x; i < cols; i += blockDim.x) out[row * cols + i] = 0.0f;
    return;
  }
  const T* src = table + static_cast<int64_t>(token) * cols;
  for (int64_t i = threadIdx.x; i < cols; i += blockDim.x) out[row * cols + i] = to_float(src[i]);
}

// One block per row (of up to 1024 * V values), each thread holding V of them in registers; sums
// in float over the block (the CPU reference sums in double: the difference is far below the bf16
// rounding of the matrix products that follow). With `add`, the row normalized is x + add, stored
// in `sum` (the residual stream, in place). The weights are read before the inputs are ready: no
// kernel writes them, and a decode step's norms are too short to hide a load.
template <int V>
__global__ void __launch_bounds__(1024)
    norm_kernel(NormType type, const float* x, const float* add, float* sum, const float* weight, const float* bias,
                int64_t cols, float eps, float* out) {
  __shared__ float scratch[32];
  const int64_t row = blockIdx.x * cols;
  float w[V], v[V];
#pragma unroll
  for (int k = 0; k < V; ++k) {
    const int64_t i = threadIdx.x + k * static_cast<int64_t>(blockDim.x);
    w[k] = i >= cols ? 0.0f : type == NormType::RmsPlusOne ? weight[i] + 1.0f : weight[i];
  }
  wait_for_inputs();
#pragma unroll
  for (int k = 0; k < V; ++k) {
    const int64_t i = threadIdx.x + k * static_cast<int64_t>(blockDim.x);
    v[k] = i < cols ? (add ? x[row + i] + add[row + i] : x[row + i]) : 0.0f;
    if (add && i < cols) sum[row + i] = v[k];
  }
  float mean = 0;
  if (type == NormType::Layer) {
    float s = 0;
#pragma unroll
    for (int k = 0; k < V; ++k) s += v[k];
    mean = block_sum(s, scratch) / static_cast<float>(cols);
  }
  float sq = 0;
#pragma unroll
  for (int k = 0; k < V; ++k) {
    const int64_t i = threadIdx.x + k * static_cast<int64_t>(blockDim.x);
    if (i < cols) sq += (v[k] - mean) * (v[k] - mean);
  }
  const float inv = rsqrtf(block_sum(sq, scratch) / static_cast<float>(cols) + eps);
#pragma unroll
  for (int k = 0; k < V; ++k) {
    const int64_t i = threadIdx.x + k * static_cast<int64_t>(blockDim.x);
    if (i < cols) out[row + i] = w[k] * ((v[k] - mean) * inv) + (bias ? bias[i] : 0.0f);
  }
}

// f(i) for every i in [0, n), a thread each: the body of every element-wise operation below.
template <typename F>
__global__ void each_kernel(int64_t n, F f) {
  wait_for_inputs();
  const int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  if (i < n) f(i);
}

template <typename F>
void for_each_index(int64_t n, cudaStream_t stream, F f) {
  if (n > 0) launch(each_kernel<F>, blocks_for(n, kThreads), kThreads, 0, stream, n, f);
}

// One thread per (token, head, pair), the heads of q then those of k for each token.
__global__ void rope_kernel(float* q, int64_t heads, float* k, int64_t kv_heads, int64_t tokens, int64_t head_dim,
                            const float* cos, const float* sin, int64_t half, bool interleaved) {
  wait_for_inputs();
  const int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x, all_heads = heads + kv_heads;
  if (i >= tokens * all_heads * half) return;
  const int64_t pair = i % half, head = i / half % all_heads, t = i / half / all_heads;
  float* v = head < heads ? q + (t * heads + head) * head_dim : k + (t * kv_heads + head - heads) * head_dim;
  const int64_t first = interleaved ? 2 * pair : pair, second = interleaved ? 2 * pair + 1 : pair + half;
  const float2 r = rotate_pair(v[first], v[second], cos[t * half + pair], sin[t * half + pair]);
  v[first] = r.x;
  v[second] = r.y;
}

// The larger of two candidates (index -1: none); ties go to the lower index, as on the CPU.
struct Candidate {
  float value;
  int32_t index;
};
__device__ inline Candidate better(Candidate a, Candidate b) {
  return b.index >= 0 && (a.index < 0 || b.value > a.value || (b.value == a.value && b.index < a.index)) ? b : a;
}
__device__ inline Candidate warp_better(Candidate c) {
  for (int offset = 16; offset > 0; offset /= 2) {
    c = better(c, {__shfl_xor_sync(0xffffffffu, c.value, offset), __shfl_xor_sync(0xffffffffu, c.index, offset)});
  }
  return c;
}

// One block of kArgmaxThreads per row, each thread keeping the first maximum of the columns it reads
// (in increasing order: strictly greater replaces), a float4 at a time where the row allows (256
// threads reading a float at a time took 298 us for 256 rows of a 128k vocabulary, 0.43 TB/s). With
// `allowed` ([rows, words] bits), only the columns whose bit is set compete; a row with none gets -1.
constexpr int kArgmaxThreads = 1024;
__global__ void __launch_bounds__(kArgmaxThreads)
    argmax_kernel(const float* x, int64_t cols, const uint64_t* allowed, int64_t words, int32_t* out) {
  __shared__ Candidate best[kArgmaxThreads / 32];
  wait_for_inputs();
  const float* row = x + blockIdx.x * cols;
  const uint64_t* bits = allowed ? allowed + blockIdx.x * words : nullptr;
  Candidate mine{-INFINITY, -1};
  const auto consider = [&](int64_t i, float v) {
    if (!bits || ((bits[i >> 6] >> (i & 63)) & 1)) mine = better(mine, {v, static_cast<int32_t>(i)});
  };
  const int64_t vectors = (blockIdx.x * cols) % 4 == 0 ? cols / 4 : 0;  // whole float4s of an aligned row
  const auto* row4 = reinterpret_cast<const float4*>(row);
#pragma unroll 4
  for (int64_t v = threadIdx.x; v < vectors; v += blockDim.x) {
    const float4 f = __ldcs(row4 + v);
    consider(4 * v, f.x);
    consider(4 * v + 1, f.y);
    consider(4 * v + 2, f.z);
    consider(4 * v + 3, f.w);
  }
  for (int64_t i = 4 * vectors + threadIdx.x; i < cols; i += blockDim.x) consider(i, row[i]);
  mine = warp_better(mine);
  if (threadIdx.x % 32 == 0) best[threadIdx.x / 32] = mine;
  __syncthreads();
  if (threadIdx.x >= 32) return;
  mine = threadIdx.x < blockDim.x / 32 ? best[threadIdx.x] : Candidate{-INFINITY, -1};
  mine = warp_better(mine);
  if (threadIdx.x == 0) out[blockIdx.x] = mine.index;
}

__global__ void gather_kernel(const float* src, const int64_t* rows, int64_t cols, float* dst) {
  wait_for_inputs();
  const float* s = src + rows[blockIdx.x] * cols;
  for (int64_t i = threadIdx.x; i < cols; i += blockDim.x) dst[blockIdx.x * cols + i] = s[i];
}

__global__ void scatter_add_kernel(const float* src, const int64_t* rows, const float* weights, int64_t cols,
                                   float* dst) {
  wait_for_inputs();
  float* d = dst + rows[blockIdx.x] * cols;
  const float w = weights[blockIdx.x];
  for (int64_t i = threadIdx.x; i < cols; i += blockDim.x) d[i] += w * src[blockIdx.x * cols + i];
}

}  // namespace

void embed(const Matrix& table, const int32_t* tokens, int64_t count, float* out, cudaStream_t stream) {
  if (count == 0) return;
  const auto grid = static_cast<unsigned>(count);
  switch (table.type) {
    case WeightType::F32:
      launch(embed_kernel<float>, grid, kThreads, 0, stream, static_cast<const float*>(table.data), tokens, table.cols,
             out);
      break;
    case WeightType::BF16:
      launch(embed_kernel<__nv_bfloat16>, grid, kThreads, 0, stream, static_cast<const __nv_bfloat16*>(table.data),
             tokens, table.cols, out);
      break;
    case WeightType::F16:
      launch(embed_kernel<__half>, grid, kThreads, 0, stream, static_cast<const __half*>(table.data), tokens,
             table.cols, out);
      break;
    default: quantized_embed(table, tokens, count, out, stream);
  }
}

namespace {

void launch_norm(NormType type, const float* x, const float* add, float* sum, const float* weight, const float* bias,
                 int64_t rows, int64_t cols, float eps, float* out, cudaStream_t stream) {
  if (rows == 0) return;
  // The fewest values per thread that fit the row in a block, then the threads for them.
  const auto go = [&](auto per_thread) {
    constexpr int V = decltype(per_thread)::value;
    const auto threads = static_cast<unsigned>(std::clamp<int64_t>((cols + 32 * V - 1) / (32 * V) * 32, 32, 1024));
    launch(norm_kernel<V>, static_cast<unsigned>(rows), threads, 0, stream, type, x, add, sum, weight, bias, cols, eps,
           out);
  };
  static_assert(kMaxNormColumns == 16 * 1024);
  if (cols <= 8 * 1024) return go(std::integral_constant<int, 8>{});
  go(std::integral_constant<int, 16>{});
}

}  // namespace

void norm(NormType type, const float* x, const float* weight, const float* bias, int64_t rows, int64_t cols, float eps,
          float* out, cudaStream_t stream) {
  launch_norm(type, x, nullptr, nullptr, weight, bias, rows, cols, eps, out, stream);
}

void add_norm(NormType type, float* x, const float* y, const float* weight, const float* bias, int64_t rows,
              int64_t cols, float eps, float* out, cudaStream_t stream) {
  launch_norm(type, x, y, x, weight, bias, rows, cols, eps, out, stream);
}

void convert(const float* x, int64_t n, WeightType type, void* out, cudaStream_t stream) {
  if (type == WeightType::BF16) {
    auto* o = static_cast<__nv_bfloat16*>(out);
    for_each_index(n, stream, [=] __device__(int64_t i) { o[i] = __float2bfloat16(x[i]); });
  } else {
    auto* o = static_cast<__half*>(out);
    for_each_index(n, stream, [=] __device__(int64_t i) { o[i] = __float2half(x[i]); });
  }
}

void add_bias(float* out, const float* bias, int64_t rows, int64_t cols, cudaStream_t stream) {
  for_each_index(rows * cols, stream, [=] __device__(int64_t i) { out[i] += bias[i % cols]; });
}

void act_mul(ActType act, float* gate, const float* up, int64_t n, cudaStream_t stream) {
  for_each_index(n, stream, [=] __device__(int64_t i) { gate[i] = activation(act, gate[i]) * up[i]; });
}
void activate(ActType act, float* x, int64_t n, cudaStream_t stream) {
  for_each_index(n, stream, [=] __device__(int64_t i) { x[i] = activation(act, x[i]); });
}
void add(float* x, const float* y, int64_t n, cudaStream_t stream) {
  for_each_index(n, stream, [=] __device__(int64_t i) { x[i] += y[i]; });
}
void scale(float* x, float factor, int64_t n, cudaStream_t stream) {
  for_each_index(n, stream, [=] __device__(int64_t i) { x[i] *= factor; });
}
void softcap(float* x, float cap, int64_t n, cudaStream_t stream) {
  for_each_index(n, stream, [=] __device__(int64_t i) { x[i] = tanhf(x[i] / cap) * cap; });
}
void clamp(float* x, float limit, int64_t n, cudaStream_t stream) {
  for_each_index(n, stream, [=] __device__(int64_t i) { x[i] = fminf(fmaxf(x[i], -limit), limit); });
}

void rope(float* q, int64_t heads, float* k, int64_t kv_heads, int64_t tokens, int64_t head_dim,
          const Rotation& rotation, cudaStream_t stream) {
  const int64_t half = rotation.rotary_dim / 2, n = tokens * (heads + kv_heads) * half;
  if (n) {
    launch(rope_kernel, blocks_for(n, kThreads), kThreads, 0, stream, q, heads, k, kv_heads, tokens, head_dim,
           rotation.cos, rotation.sin, half, rotation.interleaved);
  }
}

void argmax_rows(const float* x, int64_t rows, int64_t cols, const uint64_t* allowed, int32_t* out,
                 cudaStream_t stream) {
  if (rows) {
    launch(argmax_kernel, static_cast<unsigned>(rows), kArgmaxThreads, 0, stream, x, cols, allowed, (cols + 63) / 64,
           out);
  }
}

void gather_rows(const float* src, const int64_t* rows, int64_t count, int64_t cols, float* dst, cudaStream_t stream) {
  if (count) launch(gather_kernel, static_cast<unsigned>(count), kThreads, 0, stream, src, rows, cols, dst);
}

void scatter_add_rows(const float* src, const int64_t* rows, const float* weights, int64_t count, int64_t cols,
                      float* dst, cudaStream_t stream) {
  if (count)
    launch(scatter_add_kernel, static_cast<unsigned>(count), kThreads, 0, stream, src, rows, weights, cols, dst);
}

}  // namespace nanoserve::cuda
