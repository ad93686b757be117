// Attention over the paged cache (float32, bfloat16 or scaled FP8 elements, C), in float32.
// Decode (a few queries per sequence): one block per (query token, KV head) holds the queries of
// that KV head's group, one warp each, so the group reads each key and value row once (into shared
// memory, 32 at a time). A warp scores 32 keys at a time, a key per lane, and folds them into an
// online softmax; each lane owns 2 * S values of the output. When the batch is too small to fill
// the GPU, or some queries have many more keys than the rest, a query's keys are split into runs
// taken by separate blocks, the last of which to finish combines them (flash-decoding).
// Prefill: one block per (tile of 64 queries of a sequence, head) stages 32 keys and values at a
// time in shared memory, where every query reads them; a query's head_dim values are split over
// S = 1, 2 or 4 threads of 64 dims each.
// Both do the same arithmetic for a query in the same order (below), so how the scheduler cut the
// prompts into slices never changes a result.
#include <algorithm>

#include "backend/cuda/common.cuh"

namespace nanoserve::cuda {
namespace {

// One block per token, a warp per KV head in turn.
template <typename C>
__global__ void write_kv_kernel(StepArrays step, const float* k, const float* v, int64_t kv_heads, int64_t head_dim,
                                CacheRows<C> rows) {
  wait_for_inputs();
  const int64_t t = blockIdx.x, kv_dim = kv_heads * head_dim;
  const int64_t row =
      cache_row(step.block_tables + step.table_of_token[t], static_cast<int>(step.block_size), step.positions[t]);
  const int hd = static_cast<int>(head_dim), lane = threadIdx.x % 32;
  for (int64_t h = threadIdx.x / 32; h < kv_heads; h += blockDim.x / 32) {
    const float* key = k + t * kv_dim + h * head_dim;
    const float* value = v + t * kv_dim + h * head_dim;
    const float key_scale = head_scale<C>(hd, [&](int d) { return key[d]; });
    const float value_scale = head_scale<C>(hd, [&](int d) { return value[d]; });
    for (int d = lane; d < hd; d += 32) {
      rows.keys[row * kv_dim + h * head_dim + d] = to_cache<C>(key[d], key_scale);
      rows.values[row * kv_dim + h * head_dim + d] = to_cache<C>(value[d], value_scale);
    }
    if (kScaled<C> && lane == 0) {
      rows.key_scales[row * kv_heads + h] = key_scale;
      rows.value_scales[row * kv_heads + h] = value_scale;
    }
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

// A decode step's own keys and values [tokens, kv_heads * head_dim], or none.
struct FreshKv {
  const float* k = nullptr;
  const float* v = nullptr;
};

// Output dims lane, lane + 32, ... of one query head from its partitions' (max, sum, unnormalized
// output) in parts [partitions, head_dim + 2], rescaled to their common maximum: lane p reads
// partition p's max and sum, then each lane all its dims' partials at once. Read past L1, which
// may hold the previous step's partials.
__device__ inline void combine_partitions(const float* parts, int partitions, int hd, int lane, float* out) {
  static_assert(kMaxPartitions <= 32);
  const bool mine = lane < partitions;
  const float mp = mine ? __ldcg(parts + lane * (hd + 2)) : -INFINITY;  // -inf: an empty run
  const float m = warp_max(mp);
  const float factor = mp > -INFINITY ? expf(mp - m) : 0.0f;
  const float l = warp_sum(mine && mp > -INFINITY ? __ldcg(parts + lane * (hd + 2) + 1) * factor : 0.0f);
  for (int d = lane; d < hd; d += 32) {
    float o = 0;
#pragma unroll
    for (int p = 0; p < kMaxPartitions; ++p) {
      const float f = __shfl_sync(0xffffffffu, factor, p);
      if (p < partitions && f > 0) o += __ldcg(parts + p * (hd + 2) + 2 + d) * f;
    }
    out[d] = o / l;
  }
}

// The decode kernel's shared memory: two buffers, each a chunk's keys [kKeyTile, 64 * S + 4] and
// values [kKeyTile, 64 * S] as the cache holds them (C), then each warp's query [64 * S] in float.
// Key rows are padded by 4 elements, so that the lanes of a warp, a row each, read distinct banks
// (for 16-, 8- and 4-byte reads alike), and are zero from head_dim on.
template <int S, typename C>
struct DecodeTiles {
  static constexpr int kWidth = 64 * S, kKeyStride = kWidth + 4;
  static constexpr int kKeyElements = kKeyTile * kKeyStride, kValueElements = kKeyTile * kWidth;
  static constexpr size_t bytes(int group) {
    return 2 * static_cast<size_t>(kKeyElements + kValueElements) * sizeof(C) +
           static_cast<size_t>(group) * kWidth * sizeof(float);
  }
  C* keys;
  C* values;
  float* query;
  __device__ explicit DecodeTiles(void* shared)
      : keys(static_cast<C*>(shared)),
        values(keys + 2 * kKeyElements),
        query(reinterpret_cast<float*>(values + 2 * kValueElements) + threadIdx.x / 32 * kWidth) {}
  __device__ C* key_row(int buffer, int j) const { return keys + buffer * kKeyElements + j * kKeyStride; }
  __device__ C* value_row(int buffer, int j) const { return values + buffer * kValueElements + j * kWidth; }
};

// Queries of short slices. S: 64-dim slices of head_dim (head_dim <= 64 * S); each lane owns 2 * S
// output values. The block's warps (the KV head's query heads) copy each chunk of 32 keys and
// values into shared memory together, the next chunk's while they read this one (two buffers); a
// warp scores a chunk a key per lane and folds it into an online softmax. A query of n chunks takes
// min(gridDim.z, ceil(n / run_chunks)) runs (blocks z beyond them return at once): block z takes
// the z-th run and leaves (max, sum, unnormalized output) in partials
// [singles, heads, gridDim.z, head_dim + 2]; the last of a query's blocks to finish (counted in
// arrivals [singles, kv_heads]) combines them. A query of one run writes its output itself.
// With `fresh` (k and v of a step whose slices are one token each), a query's own key and value
// are read from there, and the block whose run holds them stores them in the cache: no other block
// reads them from the cache, so no separate write has to come first. The cache's earlier rows
// are then requested before wait_for_inputs, overlapping the kernel before. With a `rotation`
// (fresh steps only), q and the fresh key are rotated as they are read.
template <int S, typename C>
__global__ void attention_kernel(StepArrays step, AttentionShape shape, const float* q, CacheRows<C> rows, float* out,
                                 int run_chunks, float* partials, int* arrivals, FreshKv fresh, Rotation rotation) {
  using Tiles = DecodeTiles<S, C>;
  constexpr int kValues = 2 * S, kWidth = Tiles::kWidth;
  extern __shared__ float4 decode_shared[];
  __shared__ bool last_to_arrive;
  const Tiles tiles(decode_shared);
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
  // The step's arrays and the cache's earlier rows: no kernel of this step writes them.
  const int64_t t = step.single_tokens[blockIdx.x], kv_head = blockIdx.y;
  const int hd = static_cast<int>(shape.head_dim);
  const int64_t head = kv_head * (shape.heads / shape.kv_heads) + warp;
  const int64_t kv_dim = shape.kv_heads * hd, head_offset = kv_head * hd;
  const int pos = step.positions[t], block_size = static_cast<int>(step.block_size);
  const int first = shape.window > 0 ? max(0, pos - static_cast<int>(shape.window) + 1) : 0;
  const int32_t* table = step.block_tables + step.table_of_token[t];
  const int first_chunk = first / kKeyTile, chunks = pos / kKeyTile - first_chunk + 1;
  const int partitions = min(static_cast<int>(gridDim.z), max(1, (chunks + run_chunks - 1) / run_chunks));
  if (static_cast<int>(blockIdx.z) >= partitions) return;  // a shorter query than the launch's longest
  const int per_partition = (chunks + partitions - 1) / partitions;
  const int begin = first_chunk + static_cast<int>(blockIdx.z) * per_partition;
  const int end = min(first_chunk + chunks, begin + per_partition);
  const bool holds_fresh = fresh.k && begin <= pos / kKeyTile && pos / kKeyTile < end;
  // Key dims from head_dim on stay zero in both buffers (no copy writes them).
  for (int i = threadIdx.x; i < 2 * kKeyTile * (kWidth - hd); i += blockDim.x) {
    tiles.key_row(0, i / (kWidth - hd))[hd + i % (kWidth - hd)] = to_cache<C>(0.0f);
  }

  // Chunk c's cache rows (-1: none: outside [first, pos], or with `fresh` the row of pos, add_fresh's)
  // and, for FP8, their scales, looked up a thread a key, two chunks ahead of the chunk being read,
  // into one of three slots (chunk c's is (c - begin) % 3): the slot being read, the one the next
  // copies come from, and the one being filled.
  struct Lookup {
    int row = -1;
    float key_scale = 1, value_scale = 1;
  };
  const auto look_up = [&](int c) {
    Lookup found;
    const int p = c * kKeyTile + static_cast<int>(threadIdx.x);
    if (threadIdx.x < kKeyTile && c < end && p >= first && p <= pos && !(fresh.k && p == pos)) {
      found.row = cache_row(table, block_size, p);
      if constexpr (kScaled<C>) {
        found.key_scale = rows.key_scales[found.row * shape.kv_heads + kv_head];
        found.value_scale = rows.value_scales[found.row * shape.kv_heads + kv_head];
      }
    }
    return found;
  };
  __shared__ int chunk_rows[3][kKeyTile];
  __shared__ float key_scales[3][kKeyTile], value_scales[3][kKeyTile];
  Lookup next;
  const auto publish = [&](int c) {
    if (threadIdx.x < kKeyTile) {
      const int slot = (c - begin) % 3;
      chunk_rows[slot][threadIdx.x] = next.row;
      key_scales[slot][threadIdx.x] = next.key_scale;
      value_scales[slot][threadIdx.x] = next.value_scale;
    }
    next = look_up(c + 1);
  };
  // Chunk c's rows into buffer (c - begin) % 2 as the cache holds them, without waiting for them.
  const auto request = [&](int c) {
    const int slot = (c - begin) % 3, buffer = (c - begin) % 2;
    for (int i = threadIdx.x; i < kKeyTile * kWidth / 4; i += blockDim.x) {
      const int j = i / (kWidth / 4), d = i % (kWidth / 4) * 4, row = chunk_rows[slot][j];
      if (row < 0 || d >= hd) continue;
      const int64_t at = static_cast<int64_t>(row) * kv_dim + head_offset + d;
      C* key = tiles.key_row(buffer, j) + d;
      C* value = tiles.value_row(buffer, j) + d;
      if (hd % 4 == 0) {  // rows then start aligned to 4 elements
        copy_async<4 * sizeof(C)>(key, rows.keys + at);
        copy_async<4 * sizeof(C)>(value, rows.values + at);
      } else {
        for (int e = 0; e < 4 && d + e < hd; ++e) {
          key[e] = rows.keys[at + e];
          value[e] = rows.values[at + e];
        }
      }
    }
    commit_copies();
  };
  const auto start = [&] {
    next = look_up(begin);
    publish(begin);
    publish(begin + 1);
    __syncthreads();
    request(begin);
  };
  if (begin < end && fresh.k) start();
  wait_for_inputs();
  if (begin < end && !fresh.k) start();  // the step's own rows, stored by write_kv_kernel before this
  const int half = static_cast<int>(rotation.rotary_dim / 2);
  const float* cos = rotation.cos ? rotation.cos + t * half : nullptr;
  const float* sin = rotation.sin ? rotation.sin + t * half : nullptr;
  const auto read = [&](const float* v, int d) {
    return cos ? rotated(v, d, half, rotation.interleaved, cos, sin) : v[d];
  };
  const float* q_row = q + (t * shape.heads + head) * hd;
  for (int d = lane; d < kWidth; d += 32) tiles.query[d] = d < hd ? read(q_row, d) : 0.0f;
  // This step's own key and value: into chunk c's buffer and the cache, rounded as the cache holds
  // them, so that later steps read what this one used. Every warp finds the head's scales itself
  // (the same), so none waits for another.
  const auto add_fresh = [&](int c) {
    const int j = pos % kKeyTile, slot = (c - begin) % 3, buffer = (c - begin) % 2;
    const int64_t row = cache_row(table, block_size, pos);
    const auto key_at = [&](int d) { return read(fresh.k + t * kv_dim + head_offset, d); };
    const auto value_at = [&](int d) { return fresh.v[t * kv_dim + head_offset + d]; };
    const float key_scale = head_scale<C>(hd, key_at), value_scale = head_scale<C>(hd, value_at);
    for (int d = threadIdx.x; d < hd; d += blockDim.x) {
      const C k = to_cache<C>(key_at(d), key_scale), v = to_cache<C>(value_at(d), value_scale);
      rows.keys[row * kv_dim + head_offset + d] = k;
      rows.values[row * kv_dim + head_offset + d] = v;
      tiles.key_row(buffer, j)[d] = k;
      tiles.value_row(buffer, j)[d] = v;
    }
    if (threadIdx.x == 0) {
      key_scales[slot][j] = key_scale;
      value_scales[slot][j] = value_scale;
      if constexpr (kScaled<C>) {
        rows.key_scales[row * shape.kv_heads + kv_head] = key_scale;
        rows.value_scales[row * shape.kv_heads + kv_head] = value_scale;
      }
    }
  };

  float m = -INFINITY, l = 0, acc[kValues] = {};
  for (int c = begin; c < end; ++c) {
    const int slot = (c - begin) % 3, buffer = (c - begin) % 2;
    wait_copies();  // this thread's copies of chunk c
    if (holds_fresh && c == pos / kKeyTile) add_fresh(c);
    // Every thread's copies of chunk c are in, and chunk c - 1 is no longer read: its buffer and
    // slot take chunks c + 1 and c + 2.
    __syncthreads();
    if (c + 2 < end) publish(c + 2);
    if (c + 1 < end) request(c + 1);
    const int p0 = c * kKeyTile, p = p0 + lane;
    const bool valid = p >= first && p <= pos;
    float s = -INFINITY;
    if (valid) {
      const C* key = tiles.key_row(buffer, lane);
      float dots[S];
#pragma unroll
      for (int sl = 0; sl < S; ++sl) {
        dots[sl] = dot64(tiles.query + 64 * sl,
                         [&](int i) { return scaled<C>(load4(key + 64 * sl + 4 * i), key_scales[slot], lane); });
      }
      s = score_of(sum_slices<S>(dots), shape);
    }
    const float m_new = fmaxf(m, warp_max(s));  // finite: some key of the chunk is valid
    const float correction = expf(__fsub_rn(m, m_new));
    const float weight = valid ? weight_of(s, m_new) : 0.0f;
    l = rescale(l, correction);
#pragma unroll
    for (int i = 0; i < kValues; ++i) acc[i] = rescale(acc[i], correction);
#pragma unroll 8
    for (int j = 0; j < kKeyTile; ++j) {
      const float wj = __shfl_sync(0xffffffffu, weight, j);
      if (p0 + j < first || p0 + j > pos) continue;  // the same for the whole warp
      l = __fadd_rn(l, wj);
      const C* v = tiles.value_row(buffer, j);
#pragma unroll
      for (int i = 0; i < kValues; ++i) {
        if (lane + 32 * i < hd) {
          acc[i] = __fmaf_rn(wj, scaled<C>(to_float(v[lane + 32 * i]), value_scales[slot], j), acc[i]);
        }
      }
    }
    m = m_new;
  }
  if (partitions > 1) {
    float* part = partials + ((blockIdx.x * shape.heads + head) * gridDim.z + blockIdx.z) * (hd + 2);
    if (lane == 0) {  // m = -inf: an empty run
      part[0] = m;
      part[1] = l;
    }
#pragma unroll
    for (int i = 0; i < kValues; ++i) {
      if (lane + 32 * i < hd) part[2 + lane + 32 * i] = acc[i];
    }
    __threadfence();  // the partials are visible before the count says so
    __syncthreads();
    if (threadIdx.x == 0) {
      int* arrived = arrivals + blockIdx.x * gridDim.y + blockIdx.y;
      last_to_arrive = atomicAdd(arrived, 1) == partitions - 1;
      if (last_to_arrive) *arrived = 0;  // for the next step
    }
    __syncthreads();
    if (last_to_arrive) {
      combine_partitions(partials + (blockIdx.x * shape.heads + head) * gridDim.z * (hd + 2), partitions, hd, lane,
                         out + (t * shape.heads + head) * hd);
    }
    return;
  }
#pragma unroll
  for (int i = 0; i < kValues; ++i) {
    const int d = lane + 32 * i;
    if (d < hd) out[(t * shape.heads + head) * hd + d] = acc[i] / l;
  }
}

// Queries of long slices. S: threads per query (head_dim <= 64 * S); each holds 64 dims of its
// query and output.
template <int S, typename C>
__global__ void __launch_bounds__(kQueryTile* S)
    tiled_attention_kernel(StepArrays step, AttentionShape shape, const float* q, CacheRows<C> rows, float* out) {
  // Keys then values, [kKeyTile, 64 * S] each: rows padded with zeros to whole 64-dim slices, so
  // that every loop over a slice has a fixed length and the arrays below stay in registers.
  extern __shared__ float staged[];
  wait_for_inputs();
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
        const int64_t row = cache_row(table, block_size, k0 + j), scale_at = row * shape.kv_heads + kv_head;
        key = scaled<C>(to_float(rows.keys[row * kv_dim + kv_head * hd + d]), rows.key_scales, scale_at);
        value = scaled<C>(to_float(rows.values[row * kv_dim + kv_head * hd + d]), rows.value_scales, scale_at);
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

template <int S, typename C>
void launch_tiled(const StepArrays& step, const AttentionShape& shape, const float* q, const CacheRows<C>& rows,
                  float* out, cudaStream_t stream) {
  const size_t shared = 2 * kKeyTile * 64 * S * sizeof(float);
  cudaFuncSetAttribute(tiled_attention_kernel<S, C>, cudaFuncAttributeMaxDynamicSharedMemorySize,
                       static_cast<int>(shared));
  const dim3 grid(static_cast<unsigned>(step.tile_count), static_cast<unsigned>(shape.heads));
  launch(tiled_attention_kernel<S, C>, grid, static_cast<unsigned>(kQueryTile * S), shared, stream, step, shape, q,
         rows, out);
}

template <int S, typename C>
void launch_decode(const StepArrays& step, const AttentionShape& shape, const float* q, const CacheRows<C>& rows,
                   float* out, const DecodeSplit& split, float* partials, int* arrivals, FreshKv fresh,
                   const Rotation& rotation, cudaStream_t stream) {
  const dim3 grid(static_cast<unsigned>(step.singles), static_cast<unsigned>(shape.kv_heads),
                  static_cast<unsigned>(split.partitions));
  const int group = static_cast<int>(shape.heads / shape.kv_heads);
  const size_t shared = DecodeTiles<S, C>::bytes(group);
  cudaFuncSetAttribute(attention_kernel<S, C>, cudaFuncAttributeMaxDynamicSharedMemorySize, static_cast<int>(shared));
  launch(attention_kernel<S, C>, grid, group * 32, shared, stream, step, shape, q, rows, out, split.run_chunks,
         partials, arrivals, fresh, rotation);
}

// Every kernel of a step over a cache of element type C.
template <typename C>
void attend(const StepArrays& step, const AttentionShape& shape, const float* q, const float* k, const float* v,
            const Rotation& rotation, const CacheRows<C>& rows, float* out, const DecodeSplit& split, float* partials,
            int* arrivals, bool tensor_cores, cudaStream_t stream) {
  // Steps of one token per sequence store their keys and values, rotated, in the attention kernel.
  FreshKv fresh;
  if (step.one_token_slices) {
    fresh = {k, v};
  } else {
    launch(write_kv_kernel<C>, static_cast<unsigned>(step.tokens), 128, 0, stream, step, k, v, shape.kv_heads,
           shape.head_dim, rows);
  }
  if (step.tile_count > 0 && tensor_cores && flash_attention_fits(shape)) {
    flash_attention<C>(step, shape, q, rows, out, stream);
  } else if (step.tile_count > 0) {
    if (shape.head_dim <= 64) {
      launch_tiled<1, C>(step, shape, q, rows, out, stream);
    } else if (shape.head_dim <= 128) {
      launch_tiled<2, C>(step, shape, q, rows, out, stream);
    } else {
      launch_tiled<4, C>(step, shape, q, rows, out, stream);
    }
  }
  if (step.singles == 0) return;
  if (shape.head_dim <= 64) {
    launch_decode<1, C>(step, shape, q, rows, out, split, partials, arrivals, fresh, rotation, stream);
  } else if (shape.head_dim <= 128) {
    launch_decode<2, C>(step, shape, q, rows, out, split, partials, arrivals, fresh, rotation, stream);
  } else {
    launch_decode<4, C>(step, shape, q, rows, out, split, partials, arrivals, fresh, rotation, stream);
  }
}

// The layer's rows as elements of C.
template <typename C>
CacheRows<C> typed(const CacheRows<void>& rows) {
  return {static_cast<C*>(rows.keys), static_cast<C*>(rows.values), rows.key_scales, rows.value_scales};
}

// The query group the decode kernel's registers allow in one block, at most kMaxQueryGroup.
template <int S, typename C>
int64_t max_query_group() {
  static const int64_t most = [] {
    cudaFuncAttributes attributes{};
    if (cudaFuncGetAttributes(&attributes, attention_kernel<S, C>) != cudaSuccess) return kMaxQueryGroup;
    return std::min<int64_t>(kMaxQueryGroup, attributes.maxThreadsPerBlock / 32);
  }();
  return most;
}

template <typename C>
int64_t max_query_group(int64_t head_dim) {
  return head_dim <= 64 ? max_query_group<1, C>() : head_dim <= 128 ? max_query_group<2, C>() : max_query_group<4, C>();
}

}  // namespace

int64_t decode_max_query_group(int64_t head_dim, CacheType cache) {
  switch (cache) {
    case CacheType::F32: return max_query_group<float>(head_dim);
    case CacheType::BF16: return max_query_group<__nv_bfloat16>(head_dim);
    case CacheType::FP8: return max_query_group<Fp8>(head_dim);
  }
  return kMaxQueryGroup;
}

DecodeSplit decode_split(int64_t singles, int64_t kv_heads, int64_t longest_keys, int64_t recorded_rows,
                         int multiprocessors) {
  const int64_t pairs = std::max<int64_t>(1, singles * kv_heads);
  const auto runs = [](int64_t n, int64_t per) {
    return static_cast<int>(std::clamp<int64_t>((n + per - 1) / per, 1, kMaxPartitions));
  };
  // Too few (query, KV head) pairs for two blocks a multiprocessor: runs of any length fill it.
  if (pairs < 2 * multiprocessors) return {runs(2 * multiprocessors, pairs), 1};
  // Enough blocks, but the longest queries would keep theirs busy long after the others end: runs of
  // at least kRunChunks chunks (256 keys), whose partials cost under 2% of the keys' reads. A recorded
  // step's launch cannot follow the lengths: its split follows the batch (a few blocks a
  // multiprocessor), and the shorter queries' blocks beyond their runs return at once.
  constexpr int64_t kRunChunks = 8, kRecordedBlocksPerMultiprocessor = 8;
  if (singles <= recorded_rows) return {runs(kRecordedBlocksPerMultiprocessor * multiprocessors, pairs), kRunChunks};
  return {runs(longest_keys, kKeyTile * kRunChunks), kRunChunks};
}

void attention(const StepArrays& step, const AttentionShape& shape, const float* q, const float* k, const float* v,
               const Rotation& rotation, CacheType cache, const CacheRows<void>& rows, float* out,
               const DecodeSplit& split, float* partials, int* arrivals, bool tensor_cores, cudaStream_t stream) {
  if (step.tokens == 0) return;
  const auto run = [&](const auto& typed_rows) {
    attend(step, shape, q, k, v, rotation, typed_rows, out, split, partials, arrivals, tensor_cores, stream);
  };
  switch (cache) {
    case CacheType::F32: return run(typed<float>(rows));
    case CacheType::BF16: return run(typed<__nv_bfloat16>(rows));
    case CacheType::FP8: return run(typed<Fp8>(rows));
  }
}

}  // namespace nanoserve::cuda
