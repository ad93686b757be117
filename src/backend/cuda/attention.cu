// Attention over the paged float32 cache, in float32.
// Decode (a few queries per sequence): one block per (query token, KV head) holds the queries of
// that KV head's group, one warp each, so the group reads each key and value row once (from L1). A
// warp scores 32 keys at a time, a key per lane, and folds them into an online softmax; each lane
// owns 2 * S values of the output. When the batch is too small to fill the GPU, each query's keys
// are split into runs taken by separate blocks and combined after (flash-decoding).
// Prefill: one block per (tile of 64 queries of a sequence, head) stages 32 keys and values at a
// time in shared memory, where every query reads them; a query's head_dim values are split over
// S = 1, 2 or 4 threads of 64 dims each.
// Both do the same arithmetic for a query in the same order (below), so how the scheduler cut the
// prompts into slices never changes a result.
#include <algorithm>

#include "backend/cuda/common.cuh"

namespace nanoserve::cuda {
namespace {

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

// The arithmetic of one query against a chunk of 32 keys, shared by both kernels so that a query's
// output has the same bits whichever kernel ran it, and so whatever else was in its step: chunks
// start at multiples of 32 positions; a query's head_dim is cut in S slices of 64 (zero-padded),
// each dotted in four chains, the slices then summed pairwise; masked keys weigh exactly zero.
// Explicit roundings (__fmaf_rn and friends) keep the compiler from fusing differently in each.
constexpr int kKeyTile = 32;

// q[0, 64) . key[0, 64), where load4(i) gives key dims 4i to 4i + 3.
template <typename Load4>
__device__ inline float dot64(const float* q, Load4 load4) {
  float part[4] = {0.0f, 0.0f, 0.0f, 0.0f};
#pragma unroll
  for (int i = 0; i < 16; ++i) {
    const float4 k = load4(i);
    part[0] = __fmaf_rn(q[4 * i], k.x, part[0]);
    part[1] = __fmaf_rn(q[4 * i + 1], k.y, part[1]);
    part[2] = __fmaf_rn(q[4 * i + 2], k.z, part[2]);
    part[3] = __fmaf_rn(q[4 * i + 3], k.w, part[3]);
  }
  return __fadd_rn(__fadd_rn(part[0], part[1]), __fadd_rn(part[2], part[3]));
}

// Dims d to d + 3 of a row of `hd` floats in global memory, zero past its end; whole float4 loads
// when hd is a multiple of 4 (rows then start 16-byte aligned).
__device__ inline float4 load4_padded(const float* row, int d, int hd) {
  if (hd % 4 == 0) return d < hd ? *reinterpret_cast<const float4*>(row + d) : make_float4(0, 0, 0, 0);
  return make_float4(d < hd ? row[d] : 0, d + 1 < hd ? row[d + 1] : 0, d + 2 < hd ? row[d + 2] : 0,
                     d + 3 < hd ? row[d + 3] : 0);
}

// The sum of S slice dots, in the order the tiled kernel's shuffles add them.
template <int S>
__device__ inline float sum_slices(const float (&dots)[S]) {
  static_assert(S == 1 || S == 2 || S == 4);
  if constexpr (S == 1) return dots[0];
  if constexpr (S == 2) return __fadd_rn(dots[0], dots[1]);
  if constexpr (S == 4) return __fadd_rn(__fadd_rn(dots[0], dots[1]), __fadd_rn(dots[2], dots[3]));
}

__device__ inline float score_of(float dot, const AttentionShape& shape) {
  const float score = __fmul_rn(dot, shape.scale);
  return shape.softcap > 0 ? __fmul_rn(tanhf(__fdiv_rn(score, shape.softcap)), shape.softcap) : score;
}

// Online softmax: the running sums rescaled to a new maximum, then a key's weight added.
__device__ inline float rescale(float x, float correction) { return __fmul_rn(x, correction); }
__device__ inline float weight_of(float score, float m) { return expf(__fsub_rn(score, m)); }

// Queries of short slices. S: 64-dim slices of head_dim (head_dim <= 64 * S); each lane owns 2 * S
// output values. With gridDim.z partitions, block z takes the z-th run of the query's 32-key
// chunks and leaves (max, sum, unnormalized output) in partials [singles, heads, partitions,
// head_dim + 2] for combine_kernel; with one, it writes the output.
template <int S>
__global__ void attention_kernel(StepArrays step, AttentionShape shape, const float* q, const float* keys,
                                 const float* values, float* out, float* partials) {
  constexpr int kValues = 2 * S;
  extern __shared__ float q_shared[];  // [group, 64 * S], zero past head_dim
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
  const int64_t t = step.single_tokens[blockIdx.x], kv_head = blockIdx.y;
  const int hd = static_cast<int>(shape.head_dim);
  const int64_t head = kv_head * (shape.heads / shape.kv_heads) + warp;
  const int64_t kv_dim = shape.kv_heads * hd, head_offset = kv_head * hd;
  float* qs = q_shared + warp * 64 * S;
  for (int d = lane; d < 64 * S; d += 32) qs[d] = d < hd ? q[(t * shape.heads + head) * hd + d] : 0.0f;
  __syncwarp();

  const int pos = step.positions[t], block_size = static_cast<int>(step.block_size);
  const int first = shape.window > 0 ? max(0, pos - static_cast<int>(shape.window) + 1) : 0;
  const int32_t* table = step.block_tables + step.table_of_token[t];
  const int partitions = static_cast<int>(gridDim.z), first_chunk = first / kKeyTile;
  const int chunks = pos / kKeyTile - first_chunk + 1, per_partition = (chunks + partitions - 1) / partitions;
  const int begin = first_chunk + static_cast<int>(blockIdx.z) * per_partition;
  const int end = min(first_chunk + chunks, begin + per_partition);
  float m = -INFINITY, l = 0, acc[kValues] = {};
  for (int p0 = begin * kKeyTile; p0 < end * kKeyTile; p0 += kKeyTile) {
    const int p = p0 + lane;
    const bool valid = p >= first && p <= pos;
    int row = 0;
    float s = -INFINITY;
    if (valid) {
      row = cache_row(table, block_size, p);
      const float* key = keys + static_cast<int64_t>(row) * kv_dim + head_offset;
      float dots[S];
#pragma unroll
      for (int sl = 0; sl < S; ++sl) {
        dots[sl] = dot64(qs + 64 * sl, [&](int i) { return load4_padded(key, 64 * sl + 4 * i, hd); });
      }
      s = score_of(sum_slices<S>(dots), shape);
    }
    const float m_new = fmaxf(m, warp_max(s));  // finite: some key of the chunk is valid
    const float correction = expf(__fsub_rn(m, m_new));
    const float weight = valid ? weight_of(s, m_new) : 0.0f;
    l = rescale(l, correction);
#pragma unroll
    for (int i = 0; i < kValues; ++i) acc[i] = rescale(acc[i], correction);
    for (int j = 0; j < kKeyTile; ++j) {
      const float wj = __shfl_sync(0xffffffffu, weight, j);
      const int rj = __shfl_sync(0xffffffffu, row, j);
      if (p0 + j < first || p0 + j > pos) continue;  // the same for the whole warp
      const float* v = values + static_cast<int64_t>(rj) * kv_dim + head_offset;
      l = __fadd_rn(l, wj);
#pragma unroll
      for (int i = 0; i < kValues; ++i) {
        const int d = lane + 32 * i;
        if (d < hd) acc[i] = __fmaf_rn(wj, v[d], acc[i]);
      }
    }
    m = m_new;
  }
  if (partitions > 1) {
    float* part = partials + ((blockIdx.x * shape.heads + head) * partitions + blockIdx.z) * (hd + 2);
    if (lane == 0) {  // m = -inf: an empty run
      part[0] = m;
      part[1] = l;
    }
#pragma unroll
    for (int i = 0; i < kValues; ++i) {
      if (lane + 32 * i < hd) part[2 + lane + 32 * i] = acc[i];
    }
    return;
  }
#pragma unroll
  for (int i = 0; i < kValues; ++i) {
    const int d = lane + 32 * i;
    if (d < hd) out[(t * shape.heads + head) * hd + d] = acc[i] / l;
  }
}

// One query head's partitions, rescaled to their common maximum: [singles, heads] blocks.
__global__ void combine_kernel(StepArrays step, AttentionShape shape, int partitions, const float* partials, float* out) {
  const int64_t t = step.single_tokens[blockIdx.x], head = blockIdx.y, hd = shape.head_dim;
  const float* parts = partials + (blockIdx.x * shape.heads + head) * partitions * (hd + 2);
  float m = -INFINITY;
  for (int p = 0; p < partitions; ++p) m = fmaxf(m, parts[p * (hd + 2)]);
  float l = 0;
  for (int p = 0; p < partitions; ++p) {
    const float mp = parts[p * (hd + 2)];
    if (mp > -INFINITY) l += parts[p * (hd + 2) + 1] * expf(mp - m);
  }
  for (int64_t d = threadIdx.x; d < hd; d += blockDim.x) {
    float o = 0;
    for (int p = 0; p < partitions; ++p) {
      const float mp = parts[p * (hd + 2)];
      if (mp > -INFINITY) o += parts[p * (hd + 2) + 2 + d] * expf(mp - m);
    }
    out[(t * shape.heads + head) * hd + d] = o / l;
  }
}

// Queries of long slices. S: threads per query (head_dim <= 64 * S); each holds 64 dims of its
// query and output.
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
  for (int k0 = first_key / kKeyTile * kKeyTile; k0 <= last_pos; k0 += kKeyTile) {
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
      const float* kr = k_tile + j * kStride + d0;
      // Each thread dots its slice; the shuffles add the slices in sum_slices's order (every
      // thread of the query gets the same bits: addition commutes).
      float dot = dot64(qv, [&](int i) { return reinterpret_cast<const float4*>(kr)[i]; });
      for (int offset = 1; offset < S; offset *= 2) dot = __fadd_rn(dot, __shfl_xor_sync(0xffffffffu, dot, offset));
      const int p = k0 + j;
      s[j] = (j < keys_here && p <= pos && p >= window_start) ? score_of(dot, shape) : -INFINITY;
      tile_max = fmaxf(tile_max, s[j]);
    }
    if (tile_max == -INFINITY) continue;  // every key of this tile is masked for this query
    const float m_new = fmaxf(m, tile_max), correction = expf(__fsub_rn(m, m_new));
    l = rescale(l, correction);
#pragma unroll
    for (int d = 0; d < 64; ++d) acc[d] = rescale(acc[d], correction);
#pragma unroll
    for (int j = 0; j < kKeyTile; ++j) {
      const float w = weight_of(s[j], m_new);  // 0 for masked keys
      const float* vr = v_tile + j * kStride + d0;
      l = __fadd_rn(l, w);
#pragma unroll
      for (int d = 0; d < 64; ++d) acc[d] = __fmaf_rn(w, vr[d], acc[d]);
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

int decode_partitions(int64_t singles, int64_t kv_heads, int multiprocessors) {
  const int64_t blocks = std::max<int64_t>(1, singles * kv_heads);
  return static_cast<int>(std::clamp<int64_t>((2 * multiprocessors + blocks - 1) / blocks, 1, kMaxPartitions));
}

void attention(const StepArrays& step, const AttentionShape& shape, const float* q, const float* k, const float* v,
               float* key_rows, float* value_rows, float* out, int partitions, float* partials, bool tensor_cores,
               cudaStream_t stream) {
  if (step.tokens == 0) return;
  const int64_t kv_dim = shape.kv_heads * shape.head_dim;
  write_kv_kernel<<<static_cast<unsigned>(step.tokens), 128, 0, stream>>>(step, k, v, kv_dim, key_rows, value_rows);
  if (step.tile_count > 0 && tensor_cores && flash_attention_fits(shape)) {
    flash_attention(step, shape, q, key_rows, value_rows, out, stream);
  } else if (step.tile_count > 0) {
    if (shape.head_dim <= 64) {
      launch_tiled<1>(step, shape, q, key_rows, value_rows, out, stream);
    } else if (shape.head_dim <= 128) {
      launch_tiled<2>(step, shape, q, key_rows, value_rows, out, stream);
    } else {
      launch_tiled<4>(step, shape, q, key_rows, value_rows, out, stream);
    }
  }
  if (step.singles == 0) return;
  const dim3 grid(static_cast<unsigned>(step.singles), static_cast<unsigned>(shape.kv_heads),
                  static_cast<unsigned>(partitions));
  const int group = static_cast<int>(shape.heads / shape.kv_heads);
  const size_t shared = static_cast<size_t>(group * 64) * sizeof(float);  // times S
  if (shape.head_dim <= 64) {
    attention_kernel<1><<<grid, group * 32, shared, stream>>>(step, shape, q, key_rows, value_rows, out, partials);
  } else if (shape.head_dim <= 128) {
    attention_kernel<2><<<grid, group * 32, 2 * shared, stream>>>(step, shape, q, key_rows, value_rows, out, partials);
  } else {
    attention_kernel<4><<<grid, group * 32, 4 * shared, stream>>>(step, shape, q, key_rows, value_rows, out, partials);
  }
  if (partitions > 1) {
    const dim3 heads(static_cast<unsigned>(step.singles), static_cast<unsigned>(shape.heads));
    combine_kernel<<<heads, 64, 0, stream>>>(step, shape, partitions, partials, out);
  }
}

}  // namespace nanoserve::cuda
