// Attention over the paged float32 cache, in float32.
// Decode (a few queries per sequence): one block per (query token, KV head) holds the queries of
// that KV head's group, one warp each, so the group reads each key and value row once (from L1). A
// warp scores 32 keys at a time, a key per lane, and folds them into an online softmax; each lane
// owns head_dim / 32 values of the output.
// Prefill: one block per (tile of 64 queries of a sequence, head) stages 32 keys and values at a
// time in shared memory, where every query reads them; a query's head_dim values are split over
// 1, 2 or 4 threads of 64 dims each.
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
  const int64_t t = step.single_tokens[blockIdx.x], kv_head = blockIdx.y, hd = shape.head_dim;
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

constexpr int kKeyTile = 32;

// S: threads per query (head_dim <= 64 * S); each holds 64 dims of its query and output.
template <int S>
__global__ void __launch_bounds__(kQueryTile * S)
    tiled_attention_kernel(StepArrays step, AttentionShape shape, const float* q, const float* keys,
                           const float* values, float* out) {
  // Keys then values, [kKeyTile, 64 * S] each: rows padded with zeros to whole 64-dim slices, so
  // that every loop over a slice has a fixed length and the arrays below stay in registers.
  extern __shared__ float staged[];
  constexpr int kStride = 64 * S;
  const int hd = static_cast<int>(shape.head_dim), kv_dim = static_cast<int>(shape.kv_heads * shape.head_dim);
  float* k_tile = staged;
  float* v_tile = staged + kKeyTile * kStride;
  const int first_token = step.tiles[2 * blockIdx.x], count = step.tiles[2 * blockIdx.x + 1];
  const int head = blockIdx.y, kv_head = head / static_cast<int>(shape.heads / shape.kv_heads);
  const int query = threadIdx.x / S, slice = threadIdx.x % S, d0 = slice * 64;
  const bool active = query < count;
  const int64_t t = first_token + min(query, count - 1);
  const int pos = step.positions[t];
  const int window_start = shape.window > 0 ? max(0, pos - static_cast<int>(shape.window) + 1) : 0;
  float qv[64], acc[64];
#pragma unroll
  for (int d = 0; d < 64; ++d) {
    qv[d] = d0 + d < hd ? q[(t * shape.heads + head) * hd + d0 + d] : 0.0f;
    acc[d] = 0;
  }
  const int32_t* table = step.block_tables + step.table_of_token[first_token];
  const int block_size = static_cast<int>(step.block_size);
  const int first_pos = step.positions[first_token], last_pos = first_pos + count - 1;
  const int first_key = shape.window > 0 ? max(0, first_pos - static_cast<int>(shape.window) + 1) : 0;
  float m = -INFINITY, l = 0;
  for (int k0 = first_key; k0 <= last_pos; k0 += kKeyTile) {
    const int keys_here = min(kKeyTile, last_pos - k0 + 1);
    __syncthreads();  // the previous tile is no longer read
    for (int i = threadIdx.x; i < kKeyTile * kStride; i += blockDim.x) {
      const int j = i / kStride, d = i % kStride;
      float key = 0, value = 0;  // padding, and rows past the last key (never stale: 0 * NaN is NaN)
      if (j < keys_here && d < hd) {
        const int64_t row = cache_row(table, block_size, k0 + j);
        key = keys[row * kv_dim + kv_head * hd + d];
        value = values[row * kv_dim + kv_head * hd + d];
      }
      k_tile[i] = key;
      v_tile[i] = value;
    }
    __syncthreads();
    float s[kKeyTile];
    float tile_max = -INFINITY;
#pragma unroll
    for (int j = 0; j < kKeyTile; ++j) {
      float part[4] = {};  // four chains: a single one waits on every add
      const float* kr = k_tile + j * kStride + d0;
#pragma unroll
      for (int d = 0; d < 64; ++d) part[d % 4] += qv[d] * kr[d];
      float dot = (part[0] + part[1]) + (part[2] + part[3]);
      for (int offset = 1; offset < S; offset *= 2) dot += __shfl_xor_sync(0xffffffffu, dot, offset);
      const int p = k0 + j;
      float score = dot * shape.scale;
      if (shape.softcap > 0) score = tanhf(score / shape.softcap) * shape.softcap;
      s[j] = (j < keys_here && p <= pos && p >= window_start) ? score : -INFINITY;
      tile_max = fmaxf(tile_max, s[j]);
    }
    if (tile_max == -INFINITY) continue;  // every key of this tile is masked for this query
    const float m_new = fmaxf(m, tile_max), correction = expf(m - m_new);
    l *= correction;
#pragma unroll
    for (int d = 0; d < 64; ++d) acc[d] *= correction;
#pragma unroll
    for (int j = 0; j < kKeyTile; ++j) {
      const float w = expf(s[j] - m_new);  // 0 for masked keys
      l += w;
      const float* vr = v_tile + j * kStride + d0;
#pragma unroll
      for (int d = 0; d < 64; ++d) acc[d] += w * vr[d];
    }
    m = m_new;
  }
  if (!active) return;
#pragma unroll
  for (int d = 0; d < 64; ++d) {
    if (d0 + d < hd) out[(t * shape.heads + head) * hd + d0 + d] = acc[d] / l;
  }
}

template <int S>
void launch_tiled(const StepArrays& step, const AttentionShape& shape, const float* q, const float* keys,
                  const float* values, float* out, cudaStream_t stream) {
  const size_t shared = 2 * kKeyTile * 64 * S * sizeof(float);
  cudaFuncSetAttribute(tiled_attention_kernel<S>, cudaFuncAttributeMaxDynamicSharedMemorySize, static_cast<int>(shared));
  const dim3 grid(static_cast<unsigned>(step.tile_count), static_cast<unsigned>(shape.heads));
  tiled_attention_kernel<S><<<grid, static_cast<unsigned>(kQueryTile * S), shared, stream>>>(step, shape, q, keys,
                                                                                             values, out);
}

}  // namespace

void attention(const StepArrays& step, const AttentionShape& shape, const float* q, const float* k, const float* v,
               float* key_rows, float* value_rows, float* out, cudaStream_t stream) {
  if (step.tokens == 0) return;
  const int64_t kv_dim = shape.kv_heads * shape.head_dim;
  write_kv_kernel<<<static_cast<unsigned>(step.tokens), 128, 0, stream>>>(step, k, v, kv_dim, key_rows, value_rows);
  if (step.tile_count > 0) {
    if (shape.head_dim <= 64) {
      launch_tiled<1>(step, shape, q, key_rows, value_rows, out, stream);
    } else if (shape.head_dim <= 128) {
      launch_tiled<2>(step, shape, q, key_rows, value_rows, out, stream);
    } else {
      launch_tiled<4>(step, shape, q, key_rows, value_rows, out, stream);
    }
  }
  if (step.singles == 0) return;
  const dim3 grid(static_cast<unsigned>(step.singles), static_cast<unsigned>(shape.kv_heads));
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
