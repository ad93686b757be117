// out = x * w^T, tiled 4 weight rows x 4 activation rows so each weight row, widened to float once,
// is reused across the activation rows. F32 and BF16 rows are read in place (bf16 widens in
// registers: its bits are the top half of a float); other types are widened a tile at a time into
// a buffer. The kernels are compiled three times, picked once for this CPU: 16 lanes (AVX-512),
// 8 lanes (AVX2, FMA), and 8 lanes on baseline x86-64.
#include <cstring>
#include <vector>

#include "backend/cpu/kernel_level.h"
#include "backend/cpu/lanes.h"
#include "backend/cpu/ops.h"
#include "backend/cpu/reduced_dot.h"
#include "backend/cpu/tiling.h"
#include "util/thread_pool.h"

namespace nanoserve::cpu {

namespace {

constexpr int kColTile = 4;  // activation rows per tile (weight rows per tile: kRowTile, tiling.h)

// A bf16 weight, as stored.
struct Bf16 {
  uint16_t bits;
};

// Lane types of a float vector V: unsigned 16-bit (bf16 as stored) and 32-bit.
template <typename V>
struct Lanes {
  static constexpr int kWidth = sizeof(V) / sizeof(float);
  typedef uint16_t Half __attribute__((vector_size(kWidth * 2)));
  typedef uint32_t Word __attribute__((vector_size(kWidth * 4)));
};

using cpu::load;  // of floats (lanes.h), beside this one of bf16
template <typename V>
[[gnu::always_inline]] inline void load(V& v, const Bf16* p) {
  typename Lanes<V>::Half half;
  std::memcpy(&half, p, sizeof half);
  const auto bits = __builtin_convertvector(half, typename Lanes<V>::Word) << 16;
  std::memcpy(&v, &bits, sizeof v);
}
[[gnu::always_inline]] inline float to_float(float f) { return f; }
[[gnu::always_inline]] inline float to_float(Bf16 b) { return bf16_to_float(b.bits); }

// out[c * ldo + r] = dot(w[r], x[c]) for r < R, c < C. Every dot product runs the same lane order
// whatever R and C are, so an output never depends on its neighbours in the tile.
template <typename V, int R, int C, typename W>
[[gnu::always_inline]] inline void tile(const W* const* w, const float* const* x, int64_t k, float* out, int64_t ldo) {
  constexpr int kWidth = Lanes<V>::kWidth;
  V acc[R][C] = {};
  int64_t i = 0;
  for (; i + kWidth <= k; i += kWidth) {
    V xs[C];
    for (int c = 0; c < C; ++c) load(xs[c], x[c] + i);
    for (int r = 0; r < R; ++r) {
      V wr;
      load(wr, w[r] + i);
      for (int c = 0; c < C; ++c) acc[r][c] += wr * xs[c];
    }
  }
  for (int r = 0; r < R; ++r) {
    for (int c = 0; c < C; ++c) {
      float s = sum_lanes(acc[r][c]);
      for (int64_t j = i; j < k; ++j) s += to_float(w[r][j]) * x[c][j];
      out[c * ldo + r] = s;
    }
  }
}

template <typename V, int R, typename W>
[[gnu::always_inline]] inline void tile_cols(const W* const* w, const float* x, int64_t rows, int64_t k, float* out,
                                             int64_t ldo) {
  int64_t c = 0;
  for (; c + kColTile <= rows; c += kColTile) {
    const float* xs[kColTile] = {x + c * k, x + (c + 1) * k, x + (c + 2) * k, x + (c + 3) * k};
    tile<V, R, kColTile>(w, xs, k, out + c * ldo, ldo);
  }
  for (; c < rows; ++c) {
    const float* xs[1] = {x + c * k};
    tile<V, R, 1>(w, xs, k, out + c * ldo, ldo);
  }
}

// One tile of `count` weight rows against every activation row.
template <typename V, typename W>
[[gnu::always_inline]] inline void multiply_rows_of(const W* const* w, int64_t count, const float* x, int64_t rows,
                                                    int64_t k, float* out, int64_t ldo) {
  switch (count) {
    case 4: tile_cols<V, 4>(w, x, rows, k, out, ldo); break;
    case 3: tile_cols<V, 3>(w, x, rows, k, out, ldo); break;
    case 2: tile_cols<V, 2>(w, x, rows, k, out, ldo); break;
    default: tile_cols<V, 1>(w, x, rows, k, out, ldo); break;
  }
}

template <typename W>
using RowKernel = void (*)(const W* const*, int64_t, const float*, int64_t, int64_t, float*, int64_t);

template <typename W>
__attribute__((target("arch=x86-64-v4"))) void rows_avx512(const W* const* w, int64_t count, const float* x,
                                                           int64_t rows, int64_t k, float* out, int64_t ldo) {
  multiply_rows_of<v16>(w, count, x, rows, k, out, ldo);
}

template <typename W>
__attribute__((target("arch=x86-64-v3"))) void rows_avx2(const W* const* w, int64_t count, const float* x, int64_t rows,
                                                         int64_t k, float* out, int64_t ldo) {
  multiply_rows_of<v8>(w, count, x, rows, k, out, ldo);
}

template <typename W>
void rows_baseline(const W* const* w, int64_t count, const float* x, int64_t rows, int64_t k, float* out, int64_t ldo) {
  multiply_rows_of<v8>(w, count, x, rows, k, out, ldo);
}

// The variant for the kernel level (backend/cpu/kernel_level.h), chosen once.
template <typename W>
RowKernel<W> row_kernel() {
  static const RowKernel<W> kernel = [] {
    switch (kernel_level()) {
      case KernelLevel::Avx512: return &rows_avx512<W>;
      case KernelLevel::Avx2: return &rows_avx2<W>;
      case KernelLevel::Baseline: break;
    }
    return &rows_baseline<W>;
  }();
  return kernel;
}

// Weight rows r0.. (count of them) of an F32 or BF16 tensor, read where they lie, against `rows`
// activation rows; out points at output [0, r0].
template <typename W>
void in_place_tile(const TensorView& w, int64_t r0, int64_t count, const float* x, int64_t rows, float* out) {
  const W* wr[kRowTile];
  for (int64_t r = 0; r < count; ++r) wr[r] = reinterpret_cast<const W*>(w.data) + (r0 + r) * w.stride();
  row_kernel<W>()(wr, count, x, rows, w.shape[1], out, w.shape[0]);
}

// out[rows, n] = x[rows, k] * w^T for w [n, k]. Each output is one dot product whatever the
// blocking, so it does not depend on the batch.
void multiply_out_in(const float* x, int64_t rows, const TensorView& w, float* out) {
  if (takes_reduced_dot(w.dtype)) return multiply_reduced(x, rows, w, out);
  const int64_t n = w.shape[0], k = w.shape[1];
  if (w.dtype == DType::F32 || w.dtype == DType::BF16) {
    return each_tile_and_block(n, rows, [&](int64_t r0, int64_t count, int64_t r_begin, int64_t block) {
      float* o = out + r_begin * n + r0;
      if (w.dtype == DType::BF16) {
        in_place_tile<Bf16>(w, r0, count, x + r_begin * k, block, o);
      } else {
        in_place_tile<float>(w, r0, count, x + r_begin * k, block, o);
      }
    });
  }
  // Widened types pass over the activations once, to widen each tile once.
  const int64_t tiles = (n + kRowTile - 1) / kRowTile;
  ThreadPool::global().parallel_for(static_cast<size_t>(tiles), [&](size_t begin, size_t end) {
    std::vector<float> widened(static_cast<size_t>(kRowTile * k));
    for (size_t t = begin; t < end; ++t) {
      const int64_t r0 = static_cast<int64_t>(t) * kRowTile, count = std::min<int64_t>(kRowTile, n - r0);
      const float* wr[kRowTile];
      for (int64_t r = 0; r < count; ++r) {
        load_row(w, r0 + r, widened.data() + r * k);
        wr[r] = widened.data() + r * k;
      }
      row_kernel<float>()(wr, count, x, rows, k, out + r0, n);
    }
  });
}

// out[rows, n] = x[rows, k] * w for w [k, n] (possibly a column range: row_stride >= n). Each output
// sums over k in order, so it does not depend on the batch.
void multiply_in_out(const float* x, int64_t rows, const TensorView& w, float* out) {
  const int64_t k = w.shape[0], n = w.shape[1];
  constexpr int64_t kBlock = 64;
  const int64_t blocks = (n + kBlock - 1) / kBlock;
  ThreadPool::global().parallel_for(static_cast<size_t>(blocks), [&](size_t begin, size_t end) {
    std::vector<float> row(static_cast<size_t>(n));
    std::vector<float> acc(static_cast<size_t>(kBlock));
    for (size_t b = begin; b < end; ++b) {
      const int64_t c0 = static_cast<int64_t>(b) * kBlock, width = std::min(kBlock, n - c0);
      for (int64_t r = 0; r < rows; ++r) {
        std::fill(acc.begin(), acc.end(), 0.0f);
        for (int64_t i = 0; i < k; ++i) {
          load_row(w, i, row.data());  // widening a whole row per block keeps this simple; GPT-2 is the only user
          const float xi = x[r * k + i];
          for (int64_t c = 0; c < width; ++c) acc[static_cast<size_t>(c)] += xi * row[static_cast<size_t>(c0 + c)];
        }
        std::copy(acc.begin(), acc.begin() + width, out + r * n + c0);
      }
    }
  });
}

}  // namespace

void linear(const float* x, int64_t rows, const Linear& layer, float* out) {
  if (layer.in_out) {
    multiply_in_out(x, rows, layer.weight, out);
  } else {
    multiply_out_in(x, rows, layer.weight, out);
  }
  add_bias(layer.bias, rows, out);
}

void add_bias(const TensorView& bias, int64_t rows, float* out) {
  if (!bias.data) return;
  const int64_t n = bias.shape[0];
  std::vector<float> values(static_cast<size_t>(n));
  load_row(bias, 0, values.data());
  for (int64_t r = 0; r < rows; ++r) add(out + r * n, values.data(), n);
}

}  // namespace nanoserve::cpu
