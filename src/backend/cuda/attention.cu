// Attention over the paged float32 cache. One block per (query token, KV head) holds the queries
// of that KV head's group, one warp each, so the group reads each key and value row once (from L1).
// A warp scores 32 keys at a time, a key per lane, and folds them into an online softmax; each lane
// owns head_dim / 32 values of the output.
#include "backend/cuda/common.cuh"

namespace nanoserve::cuda {
namespace {

// 32-bit index arithmetic: a cache holds fewer than 2^31 positions (the backend checks).
__device__ inline int cache_row(const int32_t* table, int block_size, int pos) {
  return table[pos / block_size] * block_size + pos % block_size;
}

__global__ void write_kv_kernel(StepArrays step, const float* k, const float* v, int64_t kv_dim, float* keys,
                                float* values) {
  const int64_t t = blockIdx.x;
  const int64_t row = cache_row(step.block_tables + step.table_of_token[t], static_cast<int>(step.block_size),
                                step.positions[t]);
  for (int64_t i = threadIdx.x; i < kv_dim; i += blockDim.x) {
    keys[row * kv_dim + i] = k[t * kv_dim + i];
    values[row * kv_dim + i] = v[t * kv_dim + i];
  }
}

__device__ inline float dot(const float* q, const float* k, int64_t n) {
  float acc = 0;
  if (n % 4 == 0) {
    for (int64_t d = 0; d < n; d += 4) {
      const float4 a = *reinterpret_cast<const float4*>(q + d), b = *reinterpret_cast<const float4*>(k + d);
      acc += a.x * b.x + a.y * b.y + a.z * b.z + a.w * b.w;
    }
  } else {
    for (int64_t d = 0; d < n; ++d) acc += q[d] * k[d];
  }
  return acc;
}

// D: output values per lane (head_dim <= 32 * D).
template <int D>
__global__ void attention_kernel(StepArrays step, AttentionShape shape, const float* q, const float* keys,
                                 const float* values, float* out) {
  extern __shared__ float q_shared[];  // [group, head_dim]
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
  const int64_t t = blockIdx.x, kv_head = blockIdx.y, hd = shape.head_dim;
  const int64_t head = kv_head * (shape.heads / shape.kv_heads) + warp;
  const int64_t kv_dim = shape.kv_heads * hd, head_offset = kv_head * hd;
  float* qs = q_shared + warp * hd;
  for (int64_t d = lane; d < hd; d += 32) qs[d] = q[(t * shape.heads + head) * hd + d];
  __syncwarp();

  const int pos = step.positions[t], block_size = static_cast<int>(step.block_size);
  const int first = shape.window > 0 ? max(0, pos - static_cast<int>(shape.window) + 1) : 0;
  const int32_t* table = step.block_tables + step.table_of_token[t];
  float m = -INFINITY, l = 0, acc[D] = {};
  for (int p0 = first; p0 <= pos; p0 += 32) {
    const int p = p0 + lane;
    const bool valid = p <= pos;
    int row = 0;
    float s = -INFINITY;
    if (valid) {
      row = cache_row(table, block_size, p);
      s = dot(qs, keys + static_cast<int64_t>(row) * kv_dim + head_offset, hd) * shape.scale;
      if (shape.softcap > 0) s = tanhf(s / shape.softcap) * shape.softcap;
    }
    const float m_new = fmaxf(m, warp_max(s));  // finite: key p0 is always valid
    const float weight = valid ? expf(s - m_new) : 0.0f;
    const float correction = expf(m - m_new);
    l = l * correction + warp_sum(weight);
#pragma unroll
    for (int i = 0; i < D; ++i) acc[i] *= correction;
    const int n = min(32, pos - p0 + 1);
    for (int j = 0; j < n; ++j) {
      const float wj = __shfl_sync(0xffffffffu, weight, j);
      const int rj = __shfl_sync(0xffffffffu, row, j);
      const float* v = values + static_cast<int64_t>(rj) * kv_dim + head_offset;
#pragma unroll
      for (int i = 0; i < D; ++i) {
        const int64_t d = lane + 32 * i;
        if (d < hd) acc[i] += wj * v[d];
      }
    }
    m = m_new;
  }
#pragma unroll
  for (int i = 0; i < D; ++i) {
    const int64_t d = lane + 32 * i;
    if (d < hd) out[(t * shape.heads + head) * hd + d] = acc[i] / l;
  }
}

}  // namespace

void attention(const StepArrays& step, const AttentionShape& shape, const float* q, const float* k, const float* v,
               float* key_rows, float* value_rows, float* out, cudaStream_t stream) {
  if (step.tokens == 0) return;
  const int64_t kv_dim = shape.kv_heads * shape.head_dim;
  write_kv_kernel<<<static_cast<unsigned>(step.tokens), 128, 0, stream>>>(step, k, v, kv_dim, key_rows, value_rows);
  const dim3 grid(static_cast<unsigned>(step.tokens), static_cast<unsigned>(shape.kv_heads));
  const int group = static_cast<int>(shape.heads / shape.kv_heads);
  const size_t shared = static_cast<size_t>(group * shape.head_dim) * sizeof(float);
  const int per_lane = static_cast<int>((shape.head_dim + 31) / 32);
  if (per_lane <= 1) {
    attention_kernel<1><<<grid, group * 32, shared, stream>>>(step, shape, q, key_rows, value_rows, out);
  } else if (per_lane <= 2) {
    attention_kernel<2><<<grid, group * 32, shared, stream>>>(step, shape, q, key_rows, value_rows, out);
  } else if (per_lane <= 4) {
    attention_kernel<4><<<grid, group * 32, shared, stream>>>(step, shape, q, key_rows, value_rows, out);
  } else {
    attention_kernel<8><<<grid, group * 32, shared, stream>>>(step, shape, q, key_rows, value_rows, out);
  }
}

}  // namespace nanoserve::cuda
