#include "backend/cpu/int8_dot.h"

#include <immintrin.h>

#include <cstring>
#include <vector>

#include "backend/cpu/kernel_level.h"
#include "formats/dtype.h"
#include "formats/quant.h"
#include "util/thread_pool.h"

namespace nanoserve::cpu {

namespace {

constexpr int64_t kBlockBytes = 34;  // Q8_0: float16 scale, 32 int8
constexpr int64_t kRowTile = 4;      // weight rows per parallel job

#define NANOSERVE_VNNI __attribute__((target("avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")))

NANOSERVE_VNNI inline float scale_of(const uint8_t* block) {
  uint16_t bits;
  std::memcpy(&bits, block, 2);
  return _cvtsh_ss(bits);
}

NANOSERVE_VNNI inline float sum_lanes(__m256 v) {
  const __m128 half = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  const __m128 quarter = _mm_add_ps(half, _mm_movehl_ps(half, half));
  return _mm_cvtss_f32(_mm_add_ss(quarter, _mm_movehdup_ps(quarter)));
}

// out[c * n + r] = sum over blocks of d_w * d_x * (q_w . q_x) for R weight rows and C activation
// rows. vpdpbusd multiplies unsigned by signed bytes, so q_w's sign moves onto q_x:
// |q_w| * (q_x * sign(q_w)). Each output takes the same steps whatever the tile holds. (A 512-bit
// version, two blocks per step, measured slower here: the per-block scales cost more to assemble.)
template <int R, int C>
NANOSERVE_VNNI void tile(const uint8_t* const* w, const uint8_t* const* x, int64_t blocks, float* out, int64_t n) {
  __m256 acc[R][C];
  for (auto& row : acc) {
    for (auto& a : row) a = _mm256_setzero_ps();
  }
  for (int64_t b = 0; b < blocks; ++b) {
    __m256i qx[C];
    float dx[C];
    for (int c = 0; c < C; ++c) {
      qx[c] = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(x[c] + b * kBlockBytes + 2));
      dx[c] = scale_of(x[c] + b * kBlockBytes);
    }
    for (int r = 0; r < R; ++r) {
      const __m256i qw = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(w[r] + b * kBlockBytes + 2));
      const __m256i magnitude = _mm256_sign_epi8(qw, qw);
      const float dw = scale_of(w[r] + b * kBlockBytes);
      for (int c = 0; c < C; ++c) {
        const __m256i sums = _mm256_dpbusd_epi32(_mm256_setzero_si256(), magnitude, _mm256_sign_epi8(qx[c], qw));
        acc[r][c] = _mm256_fmadd_ps(_mm256_set1_ps(dw * dx[c]), _mm256_cvtepi32_ps(sums), acc[r][c]);
      }
    }
  }
  for (int r = 0; r < R; ++r) {
    for (int c = 0; c < C; ++c) out[c * n + r] = sum_lanes(acc[r][c]);
  }
}

template <int R>
NANOSERVE_VNNI void tile_cols(const uint8_t* const* w, const uint8_t* xq, int64_t row_bytes, int64_t rows, int64_t blocks,
                              float* out, int64_t n) {
  int64_t c = 0;
  for (; c + 4 <= rows; c += 4) {
    const uint8_t* x[4] = {xq + c * row_bytes, xq + (c + 1) * row_bytes, xq + (c + 2) * row_bytes, xq + (c + 3) * row_bytes};
    tile<R, 4>(w, x, blocks, out + c * n, n);
  }
  for (; c < rows; ++c) {
    const uint8_t* x[1] = {xq + c * row_bytes};
    tile<R, 1>(w, x, blocks, out + c * n, n);
  }
}

NANOSERVE_VNNI void rows_q8_0(const uint8_t* w, int64_t stride_bytes, int64_t first, int64_t count, const uint8_t* xq,
                              int64_t row_bytes, int64_t rows, int64_t blocks, float* out, int64_t n) {
  const uint8_t* wr[kRowTile];
  for (int64_t r = 0; r < count; ++r) wr[r] = w + (first + r) * stride_bytes;
  switch (count) {
    case 4: tile_cols<4>(wr, xq, row_bytes, rows, blocks, out + first, n); break;
    case 3: tile_cols<3>(wr, xq, row_bytes, rows, blocks, out + first, n); break;
    case 2: tile_cols<2>(wr, xq, row_bytes, rows, blocks, out + first, n); break;
    default: tile_cols<1>(wr, xq, row_bytes, rows, blocks, out + first, n); break;
  }
}

}  // namespace

bool int8_dot_available() {
  static const bool available = [] {
    __builtin_cpu_init();
    return kernel_level() == KernelLevel::Avx512 && __builtin_cpu_supports("avx512vnni");  // AVX-512 CPUs all have F16C
  }();
  return available;
}

void multiply_q8_0(const float* x, int64_t rows, const TensorView& w, float* out) {
  const int64_t n = w.shape[0], k = w.shape[1], blocks = k / 32, row_bytes = blocks * kBlockBytes;
  std::vector<uint8_t> xq(static_cast<size_t>(rows * row_bytes));  // [rows, k] as Q8_0 blocks
  for (int64_t c = 0; c < rows; ++c) quantize_row_q8_0(x + c * k, xq.data() + c * row_bytes, k);
  const int64_t tiles = (n + kRowTile - 1) / kRowTile;
  const int64_t stride_bytes = dtype_bytes(DType::Q8_0, w.stride());
  ThreadPool::global().parallel_for(static_cast<size_t>(tiles), [&](size_t begin, size_t end) {
    for (size_t t = begin; t < end; ++t) {
      const int64_t r0 = static_cast<int64_t>(t) * kRowTile;
      rows_q8_0(w.data, stride_bytes, r0, std::min(kRowTile, n - r0), xq.data(), row_bytes, rows, blocks, out, n);
    }
  });
}

}  // namespace nanoserve::cpu
