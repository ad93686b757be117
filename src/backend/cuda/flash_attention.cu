// Prefill attention on the tensor cores, in the manner of FlashAttention-2: a block of 4 warps takes
// 64 consecutive queries of one head (16 a warp) and walks the sequence's keys 64 at a time. Each
// key tile is rounded from the float32 cache to bf16 in shared memory; S = Q K^T and O += P V run
// as mma.sync m16n8k16 (bf16 in, float32 accumulation), with the online softmax in registers
// between them (exp2 of scores prescaled by log2 e).
// Precision: a score's error is what moves a softmax weight, and with plain bf16 q and k it is
// 2^-8 of |q||k|: enough to flip a near-tied expert choice downstream (the olmoe_norm_topk
// fixture's logits then missed by 13%). So q and k are each split into a bf16 head and a bf16
// remainder, and S = Ql Kh + Qh Kl + Qh Kh leaves about 2^-16 of |q||k| (that fixture: 0.9%). P
// and V stay single bf16: a weighted mean of values moves by 2^-9 of their magnitude, the rounding
// every product of the model already has.
// Staging a key tile: the tile's 64 cache rows are looked up once into shared memory. A bf16 cache
// holds the tiles' elements as they are, and exactly (no remainder to split off keys): its rows are
// copied with cp.async into one of two buffers while the warps read the other, and the products with
// the keys' remainders are left out (they are zero). Other caches' rows are loaded, every thread
// issuing all its loads before it converts and stores any, so the block waits on memory about once
// per tile rather than once per row.
//
// Register fragments (PTX ISA, mma.m16n8k16): for lane t, an A fragment holds rows t/4 and t/4 + 8,
// columns 2(t%4) + {0,1} and + 8; a B fragment column t/4, rows 2(t%4) + {0,1} and + 8; a C
// fragment rows t/4 and t/4 + 8, columns 2(t%4) + {0,1}. Two adjacent n8 tiles of S in C layout
// are exactly P's k16 A fragment, so P never leaves registers. ldmatrix loads Q and K as stored
// ([row][dim] in shared memory) and V transposed.
#include <cuda_bf16.h>

#include "backend/cuda/common.cuh"

namespace nanoserve::cuda {
namespace {

constexpr int kWarps = 4;
constexpr int kRows = 16 * kWarps;  // queries per block
constexpr int kKeys = 64;           // keys per tile
static_assert(kRows == kQueryTile, "a block takes one step tile");

// Shared rows are padded by 8 bf16 (16 bytes), so the 8 rows an ldmatrix reads fall on distinct banks.
template <int D>
constexpr int kStride = D + 8;

// Whether a cache of C holds its keys and values as the tiles do: bf16, exactly.
template <typename C>
constexpr bool kRawTiles = std::is_same_v<C, __nv_bfloat16>;

// Q's head and remainder, then K's head and remainder and V, or (kRawTiles) two buffers of K and V.
template <int D, typename C>
constexpr size_t shared_bytes() {
  return static_cast<size_t>(2 * kRows + (kRawTiles<C> ? 4 : 3) * kKeys) * kStride<D> * sizeof(__nv_bfloat16);
}

__device__ inline uint32_t pack_bf16(float low, float high) {
  __nv_bfloat162 pair = __floats2bfloat162_rn(low, high);  // .x in the low 16 bits
  return *reinterpret_cast<uint32_t*>(&pair);
}

__device__ inline void ldmatrix_x4(uint32_t (&r)[4], const __nv_bfloat16* p) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0, %1, %2, %3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(shared_address(p)));
}

__device__ inline void ldmatrix_x4_trans(uint32_t (&r)[4], const __nv_bfloat16* p) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0, %1, %2, %3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(shared_address(p)));
}

// c += a * b for a 16x16 A, a 16x8 B, a 16x8 float C.
__device__ inline void mma(float (&c)[4], const uint32_t (&a)[4], uint32_t b0, uint32_t b1) {
  asm volatile(
      "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, "
      "{%0, %1, %2, %3};\n"
      : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}

__device__ inline void store_bf16(__nv_bfloat16* dst, float4 v) {
  *reinterpret_cast<uint2*>(dst) = make_uint2(pack_bf16(v.x, v.y), pack_bf16(v.z, v.w));
}

__device__ inline float remainder_of(float x) { return x - __bfloat162float(__float2bfloat16(x)); }

// v rounded to bf16 into high, and what that rounding left, v - bf16(v), rounded to bf16 into low.
__device__ inline void store_split(__nv_bfloat16* high, __nv_bfloat16* low, float4 v) {
  store_bf16(high, v);
  store_bf16(low, make_float4(remainder_of(v.x), remainder_of(v.y), remainder_of(v.z), remainder_of(v.w)));
}

// rows [0, kRows) of D floats each, row_of(r) (null: zeros), split into dst and low.
template <int D, typename RowOf>
__device__ inline void stage_queries(__nv_bfloat16* dst, __nv_bfloat16* low, RowOf row_of) {
  constexpr int kChunks = D / 4;  // float4 per row
  for (int i = threadIdx.x; i < kRows * kChunks; i += blockDim.x) {
    const int r = i / kChunks, c = i % kChunks;
    const float* src = row_of(r);
    const float4 v = src ? reinterpret_cast<const float4*>(src)[c] : make_float4(0, 0, 0, 0);
    store_split(dst + r * kStride<D> + 4 * c, low + r * kStride<D> + 4 * c, v);
  }
}

// The tile's keys and values, [kKeys][D] each from their cache rows (`rows[j]`, -1: zeros past
// the last key) of KV head `kv_head`, times their scales (FP8; `scales` [2][kKeys], keys' then
// values'): keys split into k_dst and k_low, values rounded to bf16 into v_dst. Each pass loads up to
// 8 float4 of each before storing them.
template <int D, typename C>
__device__ inline void stage_keys(__nv_bfloat16* k_dst, __nv_bfloat16* k_low, __nv_bfloat16* v_dst,
                                  const CacheRows<C>& cache, const int* rows, const float* scales, int kv_heads,
                                  int kv_head) {
  const int kv_dim = kv_heads * D, offset = kv_head * D;
  constexpr int kChunks = D / 4, kThreads = 32 * kWarps, kEach = kKeys * kChunks / kThreads;
  constexpr int kPass = D >= 96 ? 4 : kEach;  // fewer at once for wide heads, whose registers are fuller
  static_assert(kEach % kPass == 0);
#pragma unroll
  for (int first = 0; first < kEach; first += kPass) {
    float4 k[kPass], v[kPass];
#pragma unroll
    for (int e = 0; e < kPass; ++e) {
      const int i = threadIdx.x + (first + e) * kThreads, row = rows[i / kChunks];
      const int64_t at = static_cast<int64_t>(row) * kv_dim + offset + 4 * (i % kChunks);
      k[e] = row >= 0 ? scaled<C>(load4(cache.keys + at), scales, i / kChunks) : make_float4(0, 0, 0, 0);
      v[e] = row >= 0 ? scaled<C>(load4(cache.values + at), scales + kKeys, i / kChunks) : make_float4(0, 0, 0, 0);
    }
#pragma unroll
    for (int e = 0; e < kPass; ++e) {
      const int i = threadIdx.x + (first + e) * kThreads, at = (i / kChunks) * kStride<D> + 4 * (i % kChunks);
      store_split(k_dst + at, k_low + at, k[e]);
      store_bf16(v_dst + at, v[e]);
    }
  }
}

// The tile's keys and values from a bf16 cache into k_dst and v_dst [kKeys][kStride], 16 bytes a
// copy, without waiting for them (rows -1, past the last key, are zeroed).
template <int D>
__device__ inline void request_keys(__nv_bfloat16* k_dst, __nv_bfloat16* v_dst, const CacheRows<__nv_bfloat16>& cache,
                                    const int* rows, int kv_heads, int kv_head) {
  const int kv_dim = kv_heads * D, offset = kv_head * D;
  constexpr int kChunks = D / 8;  // 16-byte copies per row
  for (int i = threadIdx.x; i < kKeys * kChunks; i += blockDim.x) {
    const int j = i / kChunks, row = rows[j], at = j * kStride<D> + 8 * (i % kChunks);
    if (row < 0) {
      *reinterpret_cast<uint4*>(k_dst + at) = make_uint4(0, 0, 0, 0);
      *reinterpret_cast<uint4*>(v_dst + at) = make_uint4(0, 0, 0, 0);
      continue;
    }
    const int64_t from = static_cast<int64_t>(row) * kv_dim + offset + 8 * (i % kChunks);
    copy_async<16>(k_dst + at, cache.keys + from);
    copy_async<16>(v_dst + at, cache.values + from);
  }
  commit_copies();
}

// The lane's address for ldmatrix.x4 of the 16x16 tile at (row, col) of a [rows][kStride] array:
// `row_major_pairs` picks the order of the four 8x8 matrices. A operands and transposed V take
// (rows 0-7, cols 0-7), (8-15, 0-7), (0-7, 8-15), (8-15, 8-15); K takes (0-7, 0-7), (0-7, 8-15),
// (8-15, 0-7), (8-15, 8-15), i.e. b0 and b1 of two n8 tiles.
template <int D>
__device__ inline const __nv_bfloat16* fragment_row(const __nv_bfloat16* base, int row, int col, bool row_major_pairs) {
  const int lane = threadIdx.x % 32, quarter = lane / 8;
  const int row_half = row_major_pairs ? quarter / 2 : quarter % 2,
            col_half = row_major_pairs ? quarter % 2 : quarter / 2;
  return base + (row + lane % 8 + 8 * row_half) * kStride<D> + col + 8 * col_half;
}

template <int D, typename C>
__global__ void __launch_bounds__(32 * kWarps)
    flash_attention_kernel(StepArrays step, AttentionShape shape, const float* q, CacheRows<C> cache, float* out) {
  extern __shared__ __align__(16) unsigned char shared_raw[];
  __shared__ int key_rows[2][kKeys];      // the cache row of each key of the tile (two tiles: kRawTiles)
  __shared__ float key_scales[2][kKeys];  // FP8: each key's scale, then each value's
  wait_for_inputs();
  constexpr int kTile = kKeys * kStride<D>;
  auto* q_tile = reinterpret_cast<__nv_bfloat16*>(shared_raw);  // [kRows][kStride], then the remainders
  __nv_bfloat16* q_low = q_tile + kRows * kStride<D>;
  // [kKeys][kStride] each: K, its remainders and V; or (kRawTiles) K and V, then K and V again.
  __nv_bfloat16* k_tiles = q_low + kRows * kStride<D>;
  __nv_bfloat16* k_low = k_tiles + kTile;
  __nv_bfloat16* v_tiles = k_tiles + (kRawTiles<C> ? 1 : 2) * kTile;

  const int tile = static_cast<int>(step.tile_count) - 1 - static_cast<int>(blockIdx.x);  // the longest first
  const int first_token = step.tiles[2 * tile], count = step.tiles[2 * tile + 1];
  const int heads = static_cast<int>(shape.heads), head = static_cast<int>(blockIdx.y);
  const int kv_head = head / (heads / static_cast<int>(shape.kv_heads));
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
  const int first_pos = step.positions[first_token], last_pos = first_pos + count - 1;
  const int32_t* table = step.block_tables + step.table_of_token[first_token];
  const int block_size = static_cast<int>(step.block_size), window = static_cast<int>(shape.window);

  stage_queries<D>(q_tile, q_low, [&](int r) -> const float* {
    return r < count ? q + (static_cast<int64_t>(first_token + r) * heads + head) * D : nullptr;
  });
  __syncthreads();
  uint32_t q_frag[D / 16][4], q_low_frag[D / 16][4];  // this warp's 16 queries
#pragma unroll
  for (int kk = 0; kk < D / 16; ++kk) {
    ldmatrix_x4(q_frag[kk], fragment_row<D>(q_tile, 16 * warp, 16 * kk, false));
    ldmatrix_x4(q_low_frag[kk], fragment_row<D>(q_low, 16 * warp, 16 * kk, false));
  }

  // This lane's two query rows (past `count`: computed on zero queries, never written).
  const int row0 = 16 * warp + lane / 4;
  const int pos[2] = {first_pos + row0, first_pos + row0 + 8};
  const int start[2] = {window > 0 ? max(0, pos[0] - window + 1) : 0, window > 0 ? max(0, pos[1] - window + 1) : 0};
  // Bounds of what this warp's 16 queries see, for skipping key tiles that are masked for all of them.
  const int warp_last_pos = first_pos + 16 * warp + 15;
  const int warp_first_start = window > 0 ? max(0, first_pos + 16 * warp - window + 1) : 0;
  constexpr float kLog2e = 1.4426950408889634f;
  float o[D / 8][4] = {};
  float m[2] = {-INFINITY, -INFINITY}, l[2] = {0, 0};

  const int first_key = window > 0 ? max(0, first_pos - window + 1) : 0;
  // The cache rows of the tile from k0 into key_rows[b] (-1 past the last key), and FP8's scales.
  const auto look_up = [&](int k0, int b) {
    if (threadIdx.x < kKeys) {
      const int p = k0 + static_cast<int>(threadIdx.x);
      const int row = p <= last_pos ? cache_row(table, block_size, p) : -1;
      key_rows[b][threadIdx.x] = row;
      if (kScaled<C> && row >= 0) {
        key_scales[0][threadIdx.x] = cache.key_scales[static_cast<int64_t>(row) * shape.kv_heads + kv_head];
        key_scales[1][threadIdx.x] = cache.value_scales[static_cast<int64_t>(row) * shape.kv_heads + kv_head];
      }
    }
  };
  const int kv_heads = static_cast<int>(shape.kv_heads);
  if constexpr (kRawTiles<C>) {  // the first tile's copies
    look_up(first_key / kKeys * kKeys, 0);
    __syncthreads();
    request_keys<D>(k_tiles, v_tiles, cache, key_rows[0], kv_heads, kv_head);
  }
  for (int k0 = first_key / kKeys * kKeys, tile = 0; k0 <= last_pos; k0 += kKeys, ++tile) {
    const int b = kRawTiles<C> ? tile % 2 : 0;
    const __nv_bfloat16* k_tile = k_tiles + 2 * b * kTile;
    const __nv_bfloat16* v_tile = v_tiles + 2 * b * kTile;
    if constexpr (kRawTiles<C>) {
      if (k0 + kKeys <= last_pos) look_up(k0 + kKeys, b ^ 1);
      wait_copies();
      // This tile's copies are in, and every warp is done with the previous tile: the next one's
      // copies may go into its buffers.
      __syncthreads();
      if (k0 + kKeys <= last_pos) {
        request_keys<D>(k_tiles + 2 * (b ^ 1) * kTile, v_tiles + 2 * (b ^ 1) * kTile, cache, key_rows[b ^ 1], kv_heads,
                        kv_head);
      }
    } else {
      __syncthreads();  // every warp is done with the previous tile
      look_up(k0, 0);
      __syncthreads();
      stage_keys<D, C>(k_tiles, k_low, v_tiles, cache, key_rows[0], key_scales[0], kv_heads, kv_head);
      __syncthreads();
    }
    if (k0 > warp_last_pos || k0 + kKeys <= warp_first_start) continue;  // every key masked for this warp

    float s[kKeys / 8][4] = {};
#pragma unroll
    for (int kk = 0; kk < D / 16; ++kk) {
#pragma unroll
      for (int nn = 0; nn < kKeys / 16; ++nn) {
        uint32_t b[4];
        ldmatrix_x4(b, fragment_row<D>(k_tile, 16 * nn, 16 * kk, true));
        // The small terms first, then the large one, into the same float32 sums.
        mma(s[2 * nn], q_low_frag[kk], b[0], b[1]);
        mma(s[2 * nn + 1], q_low_frag[kk], b[2], b[3]);
        if constexpr (!kRawTiles<C>) {
          uint32_t b_low[4];
          ldmatrix_x4(b_low, fragment_row<D>(k_low, 16 * nn, 16 * kk, true));
          mma(s[2 * nn], q_frag[kk], b_low[0], b_low[1]);
          mma(s[2 * nn + 1], q_frag[kk], b_low[2], b_low[3]);
        }
        mma(s[2 * nn], q_frag[kk], b[0], b[1]);
        mma(s[2 * nn + 1], q_frag[kk], b[2], b[3]);
      }
    }

    float tile_max[2] = {-INFINITY, -INFINITY};
#pragma unroll
    for (int j = 0; j < kKeys / 8; ++j) {
#pragma unroll
      for (int e = 0; e < 4; ++e) {
        const int key = k0 + 8 * j + 2 * (lane % 4) + (e & 1), r = e / 2;
        float x = s[j][e] * shape.scale;
        if (shape.softcap > 0) x = shape.softcap * tanhf(x / shape.softcap);
        x = (key > pos[r] || key < start[r]) ? -INFINITY : x * kLog2e;
        s[j][e] = x;
        tile_max[r] = fmaxf(tile_max[r], x);
      }
    }
    float correction[2], subtract[2];
#pragma unroll
    for (int r = 0; r < 2; ++r) {  // the four lanes of a row agree on its maximum
      tile_max[r] = fmaxf(tile_max[r], __shfl_xor_sync(0xffffffffu, tile_max[r], 1));
      tile_max[r] = fmaxf(tile_max[r], __shfl_xor_sync(0xffffffffu, tile_max[r], 2));
      const float m_new = fmaxf(m[r], tile_max[r]);
      subtract[r] = m_new == -INFINITY ? 0.0f : m_new;  // no key yet: weights stay 0, not NaN
      correction[r] = exp2f(m[r] - subtract[r]);
      m[r] = m_new;
      l[r] *= correction[r];
    }
#pragma unroll
    for (int j = 0; j < kKeys / 8; ++j) {
#pragma unroll
      for (int e = 0; e < 4; ++e) {
        s[j][e] = exp2f(s[j][e] - subtract[e / 2]);
        l[e / 2] += s[j][e];  // this lane's share of the row sum, added across the quad at the end
      }
    }
#pragma unroll
    for (int j = 0; j < D / 8; ++j) {
      o[j][0] *= correction[0];
      o[j][1] *= correction[0];
      o[j][2] *= correction[1];
      o[j][3] *= correction[1];
    }
#pragma unroll
    for (int kk = 0; kk < kKeys / 16; ++kk) {
      const uint32_t p[4] = {pack_bf16(s[2 * kk][0], s[2 * kk][1]), pack_bf16(s[2 * kk][2], s[2 * kk][3]),
                             pack_bf16(s[2 * kk + 1][0], s[2 * kk + 1][1]),
                             pack_bf16(s[2 * kk + 1][2], s[2 * kk + 1][3])};
#pragma unroll
      for (int dn = 0; dn < D / 16; ++dn) {
        uint32_t b[4];
        ldmatrix_x4_trans(b, fragment_row<D>(v_tile, 16 * kk, 16 * dn, false));
        mma(o[2 * dn], p, b[0], b[1]);
        mma(o[2 * dn + 1], p, b[2], b[3]);
      }
    }
  }

#pragma unroll
  for (int r = 0; r < 2; ++r) {
    l[r] += __shfl_xor_sync(0xffffffffu, l[r], 1);
    l[r] += __shfl_xor_sync(0xffffffffu, l[r], 2);
    const int row = row0 + 8 * r;
    if (row >= count) continue;
    float* dst = out + (static_cast<int64_t>(first_token + row) * heads + head) * D + 2 * (lane % 4);
    const float inverse = 1.0f / l[r];
#pragma unroll
    for (int j = 0; j < D / 8; ++j) {
      *reinterpret_cast<float2*>(dst + 8 * j) = make_float2(o[j][2 * r] * inverse, o[j][2 * r + 1] * inverse);
    }
  }
}

template <int D, typename C>
void launch_head_dim(const StepArrays& step, const AttentionShape& shape, const float* q, const CacheRows<C>& cache,
                     float* out, cudaStream_t stream) {
  constexpr size_t shared = shared_bytes<D, C>();
  cudaFuncSetAttribute(flash_attention_kernel<D, C>, cudaFuncAttributeMaxDynamicSharedMemorySize,
                       static_cast<int>(shared));
  const dim3 grid(static_cast<unsigned>(step.tile_count), static_cast<unsigned>(shape.heads));
  launch(flash_attention_kernel<D, C>, grid, 32 * kWarps, shared, stream, step, shape, q, cache, out);
}

}  // namespace

bool flash_attention_fits(const AttentionShape& shape) {
  switch (shape.head_dim) {
    case 16:
    case 32:
    case 64:
    case 96:
    case 128: return true;
    default: return false;
  }
}

template <typename C>
void flash_attention(const StepArrays& step, const AttentionShape& shape, const float* q, const CacheRows<C>& cache,
                     float* out, cudaStream_t stream) {
  switch (shape.head_dim) {
    case 16: return launch_head_dim<16, C>(step, shape, q, cache, out, stream);
    case 32: return launch_head_dim<32, C>(step, shape, q, cache, out, stream);
    case 64: return launch_head_dim<64, C>(step, shape, q, cache, out, stream);
    case 96: return launch_head_dim<96, C>(step, shape, q, cache, out, stream);
    case 128: return launch_head_dim<128, C>(step, shape, q, cache, out, stream);
    default: break;
  }
}

template void flash_attention<float>(const StepArrays&, const AttentionShape&, const float*, const CacheRows<float>&,
                                     float*, cudaStream_t);
template void flash_attention<__nv_bfloat16>(const StepArrays&, const AttentionShape&, const float*,
                                             const CacheRows<__nv_bfloat16>&, float*, cudaStream_t);
template void flash_attention<Fp8>(const StepArrays&, const AttentionShape&, const float*, const CacheRows<Fp8>&,
                                   float*, cudaStream_t);

}  // namespace nanoserve::cuda
