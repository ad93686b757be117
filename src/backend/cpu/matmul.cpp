// out = x * w^T, tiled 4 weight rows x 4 activation rows so each weight row, widened to float once,
// is reused across the activation rows. Vector width is chosen at run time (target_clones).
#include <cstring>
#include <vector>

#include "backend/cpu/ops.h"
#include "util/thread_pool.h"

namespace nanoserve::cpu {

namespace {

constexpr int kRowTile = 4;  // weight rows per tile
constexpr int kColTile = 4;  // activation rows per tile

typedef float v8 __attribute__((vector_size(32)));

// Vectors are passed by reference: by value they would change the ABI between the clones.
[[gnu::always_inline]] inline void load8(v8& v, const float* p) { std::memcpy(&v, p, sizeof v); }

[[gnu::always_inline]] inline float sum8(const v8& v) {
  return ((v[0] + v[4]) + (v[1] + v[5])) + ((v[2] + v[6]) + (v[3] + v[7]));
}

// out[c * ldo + r] = dot(w[r], x[c]) for r < R, c < C. Every dot product runs the same lane order
// whatever R and C are, so an output never depends on its neighbours in the tile.
template <int R, int C>
[[gnu::always_inline]] inline void tile(const float* const* w, const float* const* x, int64_t k, float* out, int64_t ldo) {
  v8 acc[R][C] = {};
  int64_t i = 0;
  for (; i + 8 <= k; i += 8) {
    v8 xs[C];
    for (int c = 0; c < C; ++c) load8(xs[c], x[c] + i);
    for (int r = 0; r < R; ++r) {
      v8 wr;
      load8(wr, w[r] + i);
      for (int c = 0; c < C; ++c) acc[r][c] += wr * xs[c];
    }
  }
  for (int r = 0; r < R; ++r) {
    for (int c = 0; c < C; ++c) {
      float s = sum8(acc[r][c]);
      for (int64_t j = i; j < k; ++j) s += w[r][j] * x[c][j];
      out[c * ldo + r] = s;
    }
  }
}

template <int R>
[[gnu::always_inline]] inline void tile_cols(const float* const* w, const float* x, int64_t rows, int64_t k, float* out, int64_t ldo) {
  int64_t c = 0;
  for (; c + kColTile <= rows; c += kColTile) {
    const float* xs[kColTile] = {x + c * k, x + (c + 1) * k, x + (c + 2) * k, x + (c + 3) * k};
    tile<R, kColTile>(w, xs, k, out + c * ldo, ldo);
  }
  for (; c < rows; ++c) {
    const float* xs[1] = {x + c * k};
    tile<R, 1>(w, xs, k, out + c * ldo, ldo);
  }
}

// One tile of `count` weight rows against every activation row. The clones compile the inlined
// kernels for AVX-512, AVX2 and baseline x86-64; the loader picks one for this CPU at start-up.
__attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
void multiply_rows(const float* const* w, int64_t count, const float* x, int64_t rows, int64_t k, float* out,
                   int64_t ldo) {
  switch (count) {
    case 4: tile_cols<4>(w, x, rows, k, out, ldo); break;
    case 3: tile_cols<3>(w, x, rows, k, out, ldo); break;
    case 2: tile_cols<2>(w, x, rows, k, out, ldo); break;
    default: tile_cols<1>(w, x, rows, k, out, ldo); break;
  }
}

// out[rows, n] = x[rows, k] * w^T for w [n, k].
void multiply_out_in(const float* x, int64_t rows, const TensorView& w, float* out) {
  const int64_t n = w.shape[0], k = w.shape[1];
  const int64_t tiles = (n + kRowTile - 1) / kRowTile;
  ThreadPool::global().parallel_for(static_cast<size_t>(tiles), [&](size_t begin, size_t end) {
    std::vector<float> widened(w.dtype == DType::F32 ? 0 : static_cast<size_t>(kRowTile * k));
    for (size_t t = begin; t < end; ++t) {
      const int64_t r0 = static_cast<int64_t>(t) * kRowTile, count = std::min<int64_t>(kRowTile, n - r0);
      const float* wr[kRowTile];
      for (int64_t r = 0; r < count; ++r) {
        if (w.dtype == DType::F32) {
          wr[r] = reinterpret_cast<const float*>(w.data) + (r0 + r) * w.stride();
        } else {
          load_row(w, r0 + r, widened.data() + r * k);
          wr[r] = widened.data() + r * k;
        }
      }
      multiply_rows(wr, count, x, rows, k, out + r0, n);
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
  if (!layer.bias.data) return;
  const int64_t n = layer.out_features();
  std::vector<float> bias(static_cast<size_t>(n));
  load_row(layer.bias, 0, bias.data());
  for (int64_t r = 0; r < rows; ++r) add(out + r * n, bias.data(), n);
}

}  // namespace nanoserve::cpu
