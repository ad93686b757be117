// The CUDA kernels of the forward pass, as host functions that launch on a stream. Activations are
// float32 [rows, cols] in device memory; weights are device matrices of float32, bfloat16, float16
// or GGUF's quantized blocks. Callers check launch errors (cuda_backend.cpp).
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

namespace nanoserve::cuda {

// Q8_0 ... Q6_K: GGUF's blocks as the file holds them (formats/quant.cpp says what each holds),
// every row cols / block values of blocks.
enum class WeightType { F32, BF16, F16, Q8_0, Q4_0, Q4_K, Q5_K, Q6_K };
__host__ __device__ constexpr bool is_quantized(WeightType type) { return type >= WeightType::Q8_0; }
// Values and bytes per block (1 and the element's size for the plain types).
__host__ __device__ constexpr int block_values(WeightType type) {
  return type == WeightType::Q8_0 || type == WeightType::Q4_0 ? 32 : is_quantized(type) ? 256 : 1;
}
__host__ __device__ constexpr int block_bytes(WeightType type) {
  switch (type) {
    case WeightType::F32: return 4;
    case WeightType::BF16:
    case WeightType::F16: return 2;
    case WeightType::Q8_0: return 34;
    case WeightType::Q4_0: return 18;
    case WeightType::Q4_K: return 144;
    case WeightType::Q5_K: return 176;
    case WeightType::Q6_K: return 210;
  }
  return 0;
}

// The type a matrix's products beyond matvec run in on the tensor cores: its own, or bfloat16 for
// quantized blocks (widened by dequantize first).
__host__ __device__ constexpr WeightType product_type(WeightType type) {
  return is_quantized(type) ? WeightType::BF16 : type;
}

// A weight matrix on the device, row-major [rows, cols] (a linear layer's [out, in]).
struct Matrix {
  const void* data = nullptr;
  WeightType type = WeightType::F32;
  int64_t rows = 0, cols = 0;
  int64_t row_bytes() const { return cols / block_values(type) * block_bytes(type); }
};

enum class NormType { Rms, RmsPlusOne, Layer };
enum class ActType { Silu, GeluTanh };

// out[t] = table[tokens[t]] widened to float: [count, table.cols].
void embed(const Matrix& table, const int32_t* tokens, int64_t count, float* out, cudaStream_t stream);
// Normalizes each row of x [rows, cols] (up to kMaxNormColumns); bias only for Layer (may be
// null). out may alias x.
constexpr int64_t kMaxNormColumns = 16 * 1024;
void norm(NormType type, const float* x, const float* weight, const float* bias, int64_t rows, int64_t cols, float eps,
          float* out, cudaStream_t stream);
// x += y, then out = norm(x), in one pass: the residual add and the next block's norm. out is
// apart from x and y.
void add_norm(NormType type, float* x, const float* y, const float* weight, const float* bias, int64_t rows,
              int64_t cols, float eps, float* out, cudaStream_t stream);

// Rounds float activations to a half weight type, BF16 or F16 (what the tensor cores read): out
// [n]. F32 weights read the activations as they are.
void convert(const float* x, int64_t n, WeightType type, void* out, cudaStream_t stream);
// out[rows, w.rows] = x[rows, w.cols] * W^T (+ bias) for each target, x rounded to w's type as it
// is read (quantized blocks: x as it is, the blocks decoded to float in registers: quantized.cu);
// for rows <= kMatvecRows: warps per output feature read each weight row once for all
// rows. Beyond two rows cuBLAS is faster (bench/gpu/linear_kernels on an H200: 4 rows of an
// 8192x2048 matrix, 23 us against 11 us). Targets (up to kMaxMatvecTargets) share the weight type
// and w.cols, and go in one launch.
constexpr int64_t kMatvecRows = 2;
constexpr int kMaxMatvecTargets = 3;
struct MatvecTarget {
  Matrix w;
  const float* bias = nullptr;
  float* out = nullptr;
};
void matvec(const float* x, int64_t rows, const MatvecTarget* targets, int count, cudaStream_t stream);
// out[rows, gate.rows] = act(x * gate^T + gate_bias) * (x * up^T + up_bias), for rows <=
// kMatvecRows: a gated MLP's first half in one launch, each block taking both rows of its
// features. gate and up match in type and shape; the biases may be null.
void gated_matvec(const float* x, int64_t rows, const Matrix& gate, const float* gate_bias, const Matrix& up,
                  const float* up_bias, ActType act, float* out, cudaStream_t stream);
// out[rows, w.rows] = x[rows, w.cols] * W^T (+ bias) on the tensor cores, x in w's type, for
// BF16/F16 weights of a multiple of 8 columns (tensor_core_linear_fits). Each row is summed in an
// order that depends on W's shape alone, so its result does not depend on the other rows.
bool tensor_core_linear_fits(const Matrix& w);
void tensor_core_linear(const void* x, int64_t rows, const Matrix& w, const float* bias, float* out,
                        cudaStream_t stream);
// out [w.rows, w.cols] bfloat16 = a quantized matrix's values: what the tensor cores multiply for
// the rows beyond matvec's.
void dequantize(const Matrix& w, void* out, cudaStream_t stream);
// out[r, c] += bias[c] over [rows, cols].
void add_bias(float* out, const float* bias, int64_t rows, int64_t cols, cudaStream_t stream);

void act_mul(ActType act, float* gate, const float* up, int64_t n, cudaStream_t stream);
void activate(ActType act, float* x, int64_t n, cudaStream_t stream);
void add(float* x, const float* y, int64_t n, cudaStream_t stream);
void scale(float* x, float factor, int64_t n, cudaStream_t stream);
void softcap(float* x, float cap, int64_t n, cudaStream_t stream);
void clamp(float* x, float limit, int64_t n, cudaStream_t stream);

// A step's RoPE: cos/sin [tokens, rotary_dim / 2], rotating pairs (i, i + rotary_dim / 2), or
// (2i, 2i + 1) when interleaved. No cos: no rotation.
struct Rotation {
  const float* cos = nullptr;
  const float* sin = nullptr;
  int64_t rotary_dim = 0;
  bool interleaved = false;
};
// Rotates q [tokens, heads * head_dim] and k [tokens, kv_heads * head_dim], in one launch.
void rope(float* q, int64_t heads, float* k, int64_t kv_heads, int64_t tokens, int64_t head_dim,
          const Rotation& rotation, cudaStream_t stream);

// out[r] = the index of row r's largest value in x [rows, cols], the lowest among equals; with
// `allowed` (device, [rows, (cols + 63) / 64] bits), among the columns whose bit is set, -1 if none.
void argmax_rows(const float* x, int64_t rows, int64_t cols, const uint64_t* allowed, int32_t* out,
                 cudaStream_t stream);

// dst[i] = src[rows[i]]; dst[rows[i]] += weights[i] * src[i] (rows distinct). Indices on the device.
void gather_rows(const float* src, const int64_t* rows, int64_t count, int64_t cols, float* dst, cudaStream_t stream);
void scatter_add_rows(const float* src, const int64_t* rows, const float* weights, int64_t count, int64_t cols,
                      float* dst, cudaStream_t stream);

// A forward step's layout on the device (uploaded once per step, read by every layer).
struct StepArrays {
  int64_t tokens = 0;
  const int32_t* token_ids = nullptr;       // [tokens]
  const int32_t* positions = nullptr;       // [tokens]
  const int32_t* slots = nullptr;           // [tokens]: the cache row of each token (block * block_size + slot)
  const int32_t* block_tables = nullptr;    // each sequence's block table, concatenated
  const int32_t* table_of_token = nullptr;  // [tokens]: where its sequence's table starts in block_tables
  int64_t block_size = 0;
  // Attention work: tokens of short slices (decode) one by one, long slices (prefill) in tiles of
  // up to kQueryTile consecutive tokens of one sequence.
  const int32_t* single_tokens = nullptr;  // [singles]
  int64_t singles = 0;
  const int32_t* tiles = nullptr;  // [tile_count, 2]: first token, count
  int64_t tile_count = 0;
  bool one_token_slices = false;  // every sequence has one token in the step (decode): all singles
};
constexpr int64_t kQueryTile = 64;
constexpr int64_t kTiledFrom = 16;  // slices of this many tokens or more go in tiles

struct AttentionShape {
  int64_t heads, kv_heads, head_dim;
  float scale, softcap;  // softcap 0: none
  int64_t window;        // 0: none; else keys (pos - window, pos]
};

// Decode queries can split their keys into runs attended in parallel by separate blocks, then
// combined (flash-decoding): when few queries would leave most multiprocessors idle, and when some
// queries' keys are so many more than the others' that their blocks would finish long after the
// rest. A query of n chunks of 32 keys takes min(partitions, ceil(n / run_chunks)) runs. The
// combination rounds differently from one pass, and the split depends on the batch, so
// batch-invariant steps take {1, 1} (no split).
struct DecodeSplit {
  int partitions = 1;  // the most runs of a query: the launch's blocks per (query, KV head)
  int run_chunks = 1;  // the fewest chunks of 32 keys a run takes
};
constexpr int kMaxPartitions = 16;
// The split of a step's `singles` decode queries over `kv_heads`, the longest attending to
// `longest_keys` keys. Steps of up to `recorded_rows` queries may be recorded and replayed with
// other lengths: their split depends on the batch alone.
DecodeSplit decode_split(int64_t singles, int64_t kv_heads, int64_t longest_keys, int64_t recorded_rows,
                         int multiprocessors);

// How the KV cache holds keys and values: float32, bfloat16 (half the memory) or FP8 E4M3 with a
// float scale per position and head (a quarter, and the scales), the head's largest magnitude
// mapped to 448 (as backend/kv_cache.cpp does on the CPU). Each value is rounded once as stored, and
// every kernel reads it as stored: a decode step's own key too.
enum class CacheType { F32, BF16, FP8 };

// One layer of the cache: keys and values [positions, kv_heads * head_dim] of C; for FP8, each
// row's scales [positions, kv_heads] (a head's values are its elements times its scale).
template <typename C>
struct CacheRows {
  C* keys;
  C* values;
  float* key_scales;
  float* value_scales;
};

// The query heads per KV head that attention handles: the decode kernel gives each a warp of one
// block of up to 32 * kMaxQueryGroup threads. Its registers may allow fewer at a head_dim and cache
// type (bounding them for the largest blocks slowed every other decode by 4.5%):
// decode_max_query_group says how many.
constexpr int64_t kMaxQueryGroup = 32;
int64_t decode_max_query_group(int64_t head_dim, CacheType cache);

// Stores k, v [tokens, kv_heads * head_dim] at their slots of the layer's rows (of `cache` type), then
// attends each query of q [tokens, heads * head_dim] over its sequence's keys into out. Short
// slices' queries split their keys as `split` says, with scratch `partials`
// [singles, heads, split.partitions, head_dim + 2] and counters `arrivals` [singles, kv_heads], zeros
// that it leaves zero. Long slices run on the tensor cores (flash_attention) when `tensor_cores`
// and the shape fits; otherwise, as short ones always do, in float32 with one arithmetic for every
// slice length (batch-invariant). A `rotation`, for steps of one-token slices only, rotates q and
// k as rope() would, as the kernel reads them (q and k are left as they were).
void attention(const StepArrays& step, const AttentionShape& shape, const float* q, const float* k, const float* v,
               const Rotation& rotation, CacheType cache, const CacheRows<void>& rows, float* out,
               const DecodeSplit& split, float* partials, int* arrivals, bool tensor_cores, cudaStream_t stream);

// The step's tiles (long slices) attended on the tensor cores, q, k and v rounded to bf16: for
// head_dim 16, 32, 64, 96 or 128.
bool flash_attention_fits(const AttentionShape& shape);
template <typename C>
void flash_attention(const StepArrays& step, const AttentionShape& shape, const float* q, const CacheRows<C>& rows,
                     float* out, cudaStream_t stream);

}  // namespace nanoserve::cuda
