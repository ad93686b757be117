// Kernels over matrices kept in GGUF's quantized blocks (quantized.cuh decodes them): decode's
// matrix-vector products read the blocks once and multiply in float; prefill's products widen the
// matrix to bfloat16 (dequantize) for the tensor cores; embed decodes the rows its tokens pick.
// Memory on the GPU is then the file's bytes, not the 3.3x of widened bfloat16 (Q4_K_M).
#include "backend/cuda/quantized.cuh"

namespace nanoserve::cuda {
namespace {

constexpr int kWarps = 8;    // warps per block, a feature each
static_assert(kWarps == 8);  // the widest with_warps_per_feature gives

// The matrices of one launch (as in matvec.cu), and where each one's blocks start. Gated: gate and
// up share a warp, which writes act(gate) * up.
struct QuantTargets {
  const uint8_t* w[kMaxMatvecTargets];
  const float* bias[kMaxMatvecTargets];
  float* out[kMaxMatvecTargets];
  int64_t features[kMaxMatvecTargets];
  int64_t first_block[kMaxMatvecTargets + 1];
  int count;
  int64_t row_bytes;
  bool gated;
  ActType act;
};

// acc[r] += the group's values . x[r][8g, 8g + 8), as scale * (q . x) - offset * sum(x): the
// quants multiply the activations as integers widened to float, the group's scale once.
template <WeightType Q, int R>
__device__ inline void dot_group(const uint8_t* row, int64_t g, const float* x, int64_t cols, float (&acc)[R]) {
  constexpr bool kOffset = Q == WeightType::Q4_K || Q == WeightType::Q5_K;
  const GroupQuants group = group_quants<Q>(row, g);
#pragma unroll
  for (int r = 0; r < R; ++r) {
    const auto* xv = reinterpret_cast<const float4*>(x + r * cols + g * 8);
    const float4 a = __ldg(xv), b = __ldg(xv + 1);
    const float xs[8] = {a.x, a.y, a.z, a.w, b.x, b.y, b.z, b.w};
    float qx = 0, sum = 0;
#pragma unroll
    for (int i = 0; i < 8; ++i) {
      qx = fmaf(static_cast<float>(group.q[i]), xs[i], qx);
      if constexpr (kOffset) sum += xs[i];
    }
    acc[r] = fmaf(group.scale, qx, acc[r]);
    if constexpr (kOffset) acc[r] = fmaf(-group.offset, sum, acc[r]);
  }
}

// W warps per output feature, each lane decoding every (32 W)-th group of 8 values of the row; W
// grows for matrices of few rows so that every multiprocessor has loads in flight (as in
// matvec.cu). The lanes' sums meet in a fixed order, whatever the number of activation rows. On an
// H100 (1B shape) this measured 764 tok/s decoding Q8_0 and 647 Q4_K_M, against 678 and 589 with
// a warp per feature, and 553-570 with four groups a lane decoded at once (more registers, fewer
// warps in flight). The factored dot (dot_group) added 2-4% in one alternating run: Q8_0 746 -> 763,
// Q4_K_M 661 -> 686.

template <WeightType Q, int R, int W>
__global__ void __launch_bounds__(kWarps * 32)
    quantized_matvec_kernel(const float* __restrict__ x, QuantTargets t, int64_t cols) {
  __shared__ float partial[2][kWarps][R];  // each warp's sums of the gate (or only) and up rows
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32, part = warp % W;
  int target = 0;
  while (target + 1 < t.count && !t.gated && blockIdx.x >= t.first_block[target + 1]) ++target;
  const int64_t f = (blockIdx.x - t.first_block[target]) * (kWarps / W) + warp / W;
  const bool live = f < t.features[target];
  float acc[R] = {}, up[R] = {};
  wait_for_inputs();
  if (live) {
    const uint8_t* __restrict__ row = t.w[target] + f * t.row_bytes;
    const uint8_t* __restrict__ up_row = t.gated ? t.w[1] + f * t.row_bytes : nullptr;
    const int64_t groups = cols / 8;
    for (int64_t g = part * 32 + lane; g < groups; g += W * 32) {
      dot_group<Q, R>(row, g, x, cols, acc);
      if (t.gated) dot_group<Q, R>(up_row, g, x, cols, up);
    }
  }
#pragma unroll
  for (int r = 0; r < R; ++r) {
    const float sum = warp_sum(acc[r]), up_sum = warp_sum(up[r]);
    if (lane == 0) {
      partial[0][warp][r] = sum;
      partial[1][warp][r] = up_sum;
    }
  }
  __syncthreads();
  if (part != 0 || lane != 0 || !live) return;
#pragma unroll
  for (int r = 0; r < R; ++r) {
    float sum = 0, up_sum = 0;
    for (int p = 0; p < W; ++p) sum += partial[0][warp + p][r];
    if (t.bias[target]) sum += t.bias[target][f];
    if (t.gated) {
      for (int p = 0; p < W; ++p) up_sum += partial[1][warp + p][r];
      if (t.bias[1]) up_sum += t.bias[1][f];
      sum = activation(t.act, sum) * up_sum;
    }
    t.out[target][r * t.features[target] + f] = sum;
  }
}

// The blocks of a launch at w warps per feature, and where each target's start (a gated launch's up
// rows share the gate's blocks and warps).
int64_t lay_out_blocks(QuantTargets& t, int w) {
  int64_t blocks = 0;
  for (int i = 0; i < t.count; ++i) {
    t.first_block[i] = blocks;
    if (!t.gated || i == 0) blocks += blocks_for(t.features[i], kWarps / w);
  }
  t.first_block[t.count] = blocks;
  return blocks;
}

template <WeightType Q, int R>
void launch_rows(const float* x, QuantTargets t, int64_t cols, cudaStream_t stream) {
  const int w = warps_per_feature(kWarps, [&](int warps) { return lay_out_blocks(t, warps); });
  const auto blocks = static_cast<unsigned>(lay_out_blocks(t, w));
  with_warps_per_feature(w, [&](auto warps) {
    launch(quantized_matvec_kernel<Q, R, decltype(warps)::value>, blocks, kWarps * 32, 0, stream, x, t, cols);
  });
}

// A thread per group of 8 values.
template <WeightType Q>
__global__ void dequantize_kernel(const uint8_t* w, int64_t row_bytes, int64_t rows, int64_t cols, __nv_bfloat16* out) {
  const int64_t groups = cols / 8, i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  wait_for_inputs();
  if (i >= rows * groups) return;
  const int64_t r = i / groups, g = i % groups;
  float v[8];
  decode_group<Q>(w + r * row_bytes, g, v);
  __nv_bfloat162 packed[4];  // one 16-byte store: cols is a multiple of 32, so rows stay aligned
#pragma unroll
  for (int k = 0; k < 4; ++k) packed[k] = __floats2bfloat162_rn(v[2 * k], v[2 * k + 1]);
  *reinterpret_cast<uint4*>(out + r * cols + g * 8) = *reinterpret_cast<const uint4*>(packed);
}

// A block per token, a thread per group of its row.
template <WeightType Q>
__global__ void embed_kernel(const uint8_t* table, int64_t row_bytes, const int32_t* tokens, int64_t cols, float* out) {
  wait_for_inputs();
  const int64_t row = blockIdx.x;
  const int32_t token = tokens[row];
  for (int64_t g = threadIdx.x; g < cols / 8; g += blockDim.x) {
    float v[8] = {};  // zeros: a row another rank's share of the vocabulary holds
    if (token >= 0) decode_group<Q>(table + token * row_bytes, g, v);
#pragma unroll
    for (int k = 0; k < 8; ++k) out[row * cols + g * 8 + k] = v[k];
  }
}

// Calls Launch<Q>::run(args...) with Q the block type `type` names.
template <template <WeightType> class Launch, typename... Args>
void for_block_type(WeightType type, Args&&... args) {
  switch (type) {
    case WeightType::Q8_0: return Launch<WeightType::Q8_0>::run(std::forward<Args>(args)...);
    case WeightType::Q4_0: return Launch<WeightType::Q4_0>::run(std::forward<Args>(args)...);
    case WeightType::Q4_K: return Launch<WeightType::Q4_K>::run(std::forward<Args>(args)...);
    case WeightType::Q5_K: return Launch<WeightType::Q5_K>::run(std::forward<Args>(args)...);
    case WeightType::Q6_K: return Launch<WeightType::Q6_K>::run(std::forward<Args>(args)...);
    default: return;
  }
}

template <WeightType Q>
struct Matvec {
  static void run(const float* x, int64_t rows, const QuantTargets& t, int64_t cols, cudaStream_t stream) {
    if (rows == 1) {
      launch_rows<Q, 1>(x, t, cols, stream);
    } else {
      launch_rows<Q, 2>(x, t, cols, stream);
    }
  }
};

template <WeightType Q>
struct Dequantize {
  static void run(const Matrix& w, __nv_bfloat16* out, cudaStream_t stream) {
    launch(dequantize_kernel<Q>, blocks_for(w.rows * (w.cols / 8), 256), 256, 0, stream,
           static_cast<const uint8_t*>(w.data), w.row_bytes(), w.rows, w.cols, out);
  }
};

template <WeightType Q>
struct Embed {
  static void run(const Matrix& table, const int32_t* tokens, int64_t count, float* out, cudaStream_t stream) {
    launch(embed_kernel<Q>, static_cast<unsigned>(count), 256, 0, stream, static_cast<const uint8_t*>(table.data),
           table.row_bytes(), tokens, table.cols, out);
  }
};

}  // namespace

void quantized_matvec(const float* x, int64_t rows, const MatvecTarget* list, int count, bool gated, ActType act,
                      cudaStream_t stream) {
  QuantTargets t{};
  t.count = count;
  t.gated = gated;
  t.act = act;
  t.row_bytes = list[0].w.row_bytes();
  for (int i = 0; i < count; ++i) {
    t.w[i] = static_cast<const uint8_t*>(list[i].w.data);
    t.bias[i] = list[i].bias;
    t.out[i] = list[i].out;
    t.features[i] = list[i].w.rows;
  }
  for_block_type<Matvec>(list[0].w.type, x, rows, t, list[0].w.cols, stream);
}

void dequantize(const Matrix& w, void* out, cudaStream_t stream) {
  for_block_type<Dequantize>(w.type, w, static_cast<__nv_bfloat16*>(out), stream);
}

void quantized_embed(const Matrix& table, const int32_t* tokens, int64_t count, float* out, cudaStream_t stream) {
  for_block_type<Embed>(table.type, table, tokens, count, out, stream);
}

}  // namespace nanoserve::cuda
