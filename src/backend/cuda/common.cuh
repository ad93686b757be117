// What the kernel files share: element types, warp/block reductions, and launches that overlap.
#pragma once

#include <cuda_runtime.h>

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_fp8.h>

#include <cstdlib>
#include <string_view>
#include <type_traits>
#include <utility>

#include "backend/cuda/kernels.h"

namespace nanoserve::cuda {

__device__ inline float to_float(float x) { return x; }
__device__ inline float to_float(__nv_bfloat16 x) { return __bfloat162float(x); }
__device__ inline float to_float(__half x) { return __half2float(x); }
using Fp8 = __nv_fp8_e4m3;
__device__ inline float to_float(Fp8 x) { return static_cast<float>(x); }

// A KV cache element, float, bfloat16 or FP8 (CacheType): a value as the cache stores it, and four
// consecutive elements as floats (p 4-element aligned). FP8 elements are scaled (kScaled): x is
// the value over its head's scale.
template <typename C>
constexpr bool kScaled = std::is_same_v<C, Fp8>;
template <typename C>
__device__ inline C to_cache(float x) {
  if constexpr (std::is_same_v<C, float>) {
    return x;
  } else if constexpr (kScaled<C>) {
    return Fp8(x);  // round to nearest even, saturating at 448
  } else {
    return __float2bfloat16(x);
  }
}
__device__ inline float4 load4(const float* p) { return *reinterpret_cast<const float4*>(p); }
__device__ inline float4 load4(const __nv_bfloat16* p) {
  const uint2 u = *reinterpret_cast<const uint2*>(p);
  const float2 a = __bfloat1622float2(*reinterpret_cast<const __nv_bfloat162*>(&u.x));
  const float2 b = __bfloat1622float2(*reinterpret_cast<const __nv_bfloat162*>(&u.y));
  return make_float4(a.x, a.y, b.x, b.y);
}
__device__ inline float4 load4(const Fp8* p) {
  return static_cast<float4>(*reinterpret_cast<const __nv_fp8x4_e4m3*>(p));
}

// An FP8 head's scale from its largest magnitude (backend/kv_cache.cpp's fp8_scale).
__device__ inline float fp8_scale(float largest) { return largest > 0 ? __fdiv_rn(largest, 448.0f) : 1.0f; }

// Element values times their head's scale (FP8); unchanged for the unscaled types.
template <typename C>
__device__ inline float4 scaled(float4 v, const float* scales, int64_t at) {
  if constexpr (kScaled<C>) {
    const float s = scales[at];
    return make_float4(__fmul_rn(v.x, s), __fmul_rn(v.y, s), __fmul_rn(v.z, s), __fmul_rn(v.w, s));
  } else {
    return v;
  }
}
template <typename C>
__device__ inline float scaled(float v, const float* scales, int64_t at) {
  if constexpr (kScaled<C>) {
    return __fmul_rn(v, scales[at]);
  } else {
    return v;
  }
}

// The scale of a head's values, value(d) for d in [0, hd), as the cache would store them (1 for
// the unscaled types), computed by the calling warp; warps that call it for the same values get
// the same scale.
template <typename C, typename Value>
__device__ inline float head_scale(int hd, Value value) {
  if constexpr (kScaled<C>) {
    float largest = 0;
    // Kept rolled: unrolled with the decode kernel's RoPE inside, it took 133 registers a thread, not 56.
#pragma unroll 1
    for (int d = threadIdx.x % 32; d < hd; d += 32) largest = fmaxf(largest, fabsf(value(d)));
    for (int offset = 16; offset > 0; offset /= 2)
      largest = fmaxf(largest, __shfl_xor_sync(0xffffffffu, largest, offset));
    return fp8_scale(largest);
  } else {
    return 1.0f;
  }
}
// x as the cache stores it under its head's `scale`.
template <typename C>
__device__ inline C to_cache(float x, float scale) {
  if constexpr (kScaled<C>) {
    return to_cache<C>(__fdiv_rn(x, scale));
  } else {
    return to_cache<C>(x);
  }
}

__device__ inline float activation(ActType act, float x) {
  if (act == ActType::Silu) return x / (1.0f + expf(-x));
  return 0.5f * x * (1.0f + tanhf(0.7978845608028654f * (x + 0.044715f * x * x * x)));
}

__device__ inline float warp_sum(float v) {
  for (int offset = 16; offset > 0; offset /= 2) v += __shfl_xor_sync(0xffffffffu, v, offset);
  return v;
}

__device__ inline float warp_max(float v) {
  for (int offset = 16; offset > 0; offset /= 2) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, offset));
  return v;
}

// Sum over a block of up to 1024 threads; every thread gets the total. `scratch` holds 32 floats.
__device__ inline float block_sum(float v, float* scratch) {
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32, warps = (blockDim.x + 31) / 32;
  v = warp_sum(v);
  __syncthreads();  // scratch may still be read from a previous call
  if (lane == 0) scratch[warp] = v;
  __syncthreads();
  v = lane < warps ? scratch[lane] : 0.0f;
  return warp_sum(v);
}

// RoPE of the pair (a, b) by (cos, sin): (a cos - b sin, b cos + a sin). Explicit roundings give
// every kernel that rotates (rope, attention) the same bits.
__device__ inline float2 rotate_pair(float a, float b, float c, float s) {
  return make_float2(__fsub_rn(__fmul_rn(a, c), __fmul_rn(b, s)), __fadd_rn(__fmul_rn(b, c), __fmul_rn(a, s)));
}

// Element d of a head's vector v after RoPE by one token's rows cos/sin [half]: pairs (i, i + half),
// or (2i, 2i + 1) when interleaved; elements from 2 * half on are not rotated.
__device__ inline float rotated(const float* v, int d, int half, bool interleaved, const float* cos, const float* sin) {
  if (d >= 2 * half) return v[d];
  const bool first = interleaved ? d % 2 == 0 : d < half;
  const int pair = interleaved ? d / 2 : d % half, step = interleaved ? 1 : half;
  const int a = first ? d : d - step;
  const float2 r = rotate_pair(v[a], v[a + step], cos[pair], sin[pair]);
  return first ? r.x : r.y;
}

// The paged cache's row of position pos, through its sequence's block table. 32-bit index
// arithmetic: a cache holds fewer than 2^31 positions (the backend checks).
__device__ inline int cache_row(const int32_t* table, int block_size, int pos) {
  return table[pos / block_size] * block_size + pos % block_size;
}

// A shared-memory pointer as the 32-bit address PTX's shared-memory instructions take.
__device__ inline uint32_t shared_address(const void* p) { return static_cast<uint32_t>(__cvta_generic_to_shared(p)); }

// Copies `bytes` (4, 8 or 16, both addresses aligned to them) from global to shared memory without
// holding them in registers: the thread goes on, commit_copies closes the group of those it has
// requested, and wait_copies waits until all of them have arrived (for this thread: a
// __syncthreads after it makes every thread's visible).
template <size_t bytes>
__device__ inline void copy_async(void* shared, const void* global) {
  static_assert(bytes == 4 || bytes == 8 || bytes == 16);
  asm volatile("cp.async.ca.shared.global [%0], [%1], %2;\n" ::"r"(shared_address(shared)), "l"(global), "n"(bytes));
}
__device__ inline void commit_copies() { asm volatile("cp.async.commit_group;\n" ::); }
__device__ inline void wait_copies() { asm volatile("cp.async.wait_group 0;\n" ::: "memory"); }

inline unsigned blocks_for(int64_t n, int threads) { return static_cast<unsigned>((n + threads - 1) / threads); }

// A decode matvec's warps per output feature (matvec.cu, quantized.cu): the fewest of 1, 2, 4, ...
// up to `widest` whose launch still has kMatvecMinBlocks blocks (about four per multiprocessor of an
// H100/H200), so that matrices of few rows still keep every multiprocessor's loads in flight.
// blocks(w): the launch's blocks at w warps per feature.
constexpr int64_t kMatvecMinBlocks = 512;
template <typename Blocks>
int warps_per_feature(int widest, Blocks blocks) {
  int w = 1;
  while (w < widest && blocks(w) < kMatvecMinBlocks) w *= 2;
  return w;
}
// launch(std::integral_constant<int, W>) for W = w, one of 1, 2, 4 and 8: a kernel templated on W.
template <typename Launch>
void with_warps_per_feature(int w, Launch launch) {
  switch (w) {
    case 1: return launch(std::integral_constant<int, 1>{});
    case 2: return launch(std::integral_constant<int, 2>{});
    case 4: return launch(std::integral_constant<int, 4>{});
    default: return launch(std::integral_constant<int, 8>{});
  }
}

// Programmatic dependent launch (compute capability 9.0 and up): a kernel started by launch()
// may be scheduled while the kernel before it in the stream is still running, which hides the
// gap between the two (a decode step is hundreds of kernels of a few microseconds). So every
// kernel calls wait_for_inputs() before it reads memory an earlier kernel wrote and before it
// writes any; only reads of the weights, which no kernel writes, may come first. The wait also
// lets the next kernel be scheduled: only two kernels of a stream overlap, the one running and
// the next one waiting.
__device__ inline void wait_for_inputs() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile("griddepcontrol.wait;" ::: "memory");
  asm volatile("griddepcontrol.launch_dependents;" ::: "memory");
#endif
}

// Whether GPU 0 (the backend's) can overlap launches; NANOSERVE_CUDA_OVERLAP=0 turns it off, to
// measure what it gives.
inline bool overlaps_launches() {
  static const bool overlaps = [] {
    const char* setting = std::getenv("NANOSERVE_CUDA_OVERLAP");
    if (setting && std::string_view(setting) == "0") return false;
    int major = 0;
    return cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, 0) == cudaSuccess && major >= 9;
  }();
  return overlaps;
}

// kernel<<<grid, block, shared, stream>>>(args...), allowed to overlap the kernel before it
// (above). Launch errors are left for cudaGetLastError, as with <<<>>>.
template <typename... Params, typename... Args>
void launch(void (*kernel)(Params...), dim3 grid, dim3 block, size_t shared, cudaStream_t stream, Args&&... args) {
  cudaLaunchAttribute overlap{};
  overlap.id = cudaLaunchAttributeProgrammaticStreamSerialization;
  overlap.val.programmaticStreamSerializationAllowed = 1;
  cudaLaunchConfig_t config{};
  config.gridDim = grid;
  config.blockDim = block;
  config.dynamicSmemBytes = shared;
  config.stream = stream;
  config.attrs = &overlap;
  config.numAttrs = overlaps_launches() ? 1 : 0;
  cudaLaunchKernelEx(&config, kernel, static_cast<Params>(std::forward<Args>(args))...);
}

}  // namespace nanoserve::cuda
