// Causal attention per query over the cached keys and values, in three passes: scores q.k (keys
// are independent, so their dot products overlap), softmax, then the weighted sum of values with
// 64 dimensions held in registers across the positions. Compiled for AVX-512, AVX2 and baseline
// x86-64 (the same vector code), one picked for this CPU at start-up.
#include <algorithm>
#include <cmath>
#include <vector>

#include "backend/cpu/lanes.h"
#include "backend/cpu/ops.h"
#include "util/thread_pool.h"

namespace nanoserve::cpu {

namespace {

// a.b over n values: 16-lane chunks in four chains, then the lanes, then the tail, in a fixed order.
[[gnu::always_inline]] inline float dot(const float* a, const float* b, int64_t n) {
  v16 acc[4] = {};
  int64_t i = 0;
  for (; i + 64 <= n; i += 64) {
    for (int j = 0; j < 4; ++j) {
      v16 x, y;
      load(x, a + i + 16 * j);
      load(y, b + i + 16 * j);
      acc[j] += x * y;
    }
  }
  for (; i + 16 <= n; i += 16) {
    v16 x, y;
    load(x, a + i);
    load(y, b + i);
    acc[0] += x * y;
  }
  float sum = sum_lanes(v16((acc[0] + acc[1]) + (acc[2] + acc[3])));
  for (; i < n; ++i) sum += a[i] * b[i];
  return sum;
}

// out[0, width) = sum over p in [first, last] of weight[p] * v_rows[p][0, width), for width 64:
// two sets of accumulators (even and odd positions) so consecutive positions do not wait on each
// other's additions.
// (The two sets are indexed by constants, a pair of positions a step, so that they stay in
// registers: indexed by the position's parity they lived on the stack, a load and a store per FMA.)
[[gnu::always_inline]] inline void add_weighted_64(float weight, const float* v, v16 (&set)[4]) {
  for (int j = 0; j < 4; ++j) {
    v16 x;
    load(x, v + 16 * j);
    set[j] += weight * x;
  }
}
[[gnu::always_inline]] inline void weighted_sum_64(const float* weights, const float* const* v_rows, int64_t offset,
                                                   int64_t first, int64_t last, float* out) {
  v16 even[4] = {}, odd[4] = {};
  int64_t p = first;
  for (; p + 1 <= last; p += 2) {
    add_weighted_64(weights[p], v_rows[p] + offset, even);
    add_weighted_64(weights[p + 1], v_rows[p + 1] + offset, odd);
  }
  if (p == last) add_weighted_64(weights[p], v_rows[p] + offset, even);
  for (int j = 0; j < 4; ++j) store(out + 16 * j, v16(even[j] + odd[j]));
}

// One query row of one head against positions [first, last]; kv_offset selects the head in a row.
__attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default"))) void attend_one(
    const float* q, const float* const* k_rows, const float* const* v_rows, int64_t kv_offset, int64_t first,
    int64_t last, const AttentionParams& a, float* scores, float* out) {
  float max_score = -INFINITY;
  for (int64_t p = first; p <= last; ++p) {
    float s = dot(q, k_rows[p] + kv_offset, a.head_dim) * a.scale;
    if (a.softcap > 0) s = std::tanh(s / a.softcap) * a.softcap;
    scores[p] = s;
    max_score = std::max(max_score, s);
  }
  each_16(scores + first, last - first + 1, [&](v16& v, int64_t) {
    v -= max_score;
    exp_lanes(v);
  });
  float sum = 0;
  for (int64_t p = first; p <= last; ++p) sum += scores[p];
  for (int64_t p = first; p <= last; ++p) scores[p] /= sum;
  int64_t i = 0;
  for (; i + 64 <= a.head_dim; i += 64) weighted_sum_64(scores, v_rows, kv_offset + i, first, last, out + i);
  std::fill(out + i, out + a.head_dim, 0.0f);
  for (int64_t p = first; p <= last; ++p) {
    for (int64_t j = i; j < a.head_dim; ++j) out[j] += scores[p] * v_rows[p][kv_offset + j];
  }
}

}  // namespace

void attention(const float* q, int64_t tokens, int64_t first_pos, const float* const* k_rows,
               const float* const* v_rows, const AttentionParams& s, float* out) {
  const int64_t group = s.heads / s.kv_heads, q_stride = s.heads * s.head_dim;
  // Later queries see more keys. The jobs alternate between the cheapest and the dearest queries
  // left (0, last, 1, last - 1, ...), so the pool's contiguous ranges hold equal work.
  auto token_of = [tokens](int64_t u) { return (u & 1) ? tokens - 1 - u / 2 : u / 2; };
  ThreadPool::global().parallel_for(static_cast<size_t>(tokens * s.heads), [&](size_t begin, size_t end) {
    std::vector<float> scores(static_cast<size_t>(first_pos + tokens));
    for (size_t job = begin; job < end; ++job) {
      const int64_t t = token_of(static_cast<int64_t>(job) / s.heads), h = static_cast<int64_t>(job) % s.heads;
      const int64_t kv_offset = (h / group) * s.head_dim;
      const int64_t pos = first_pos + t, first_key = s.window > 0 ? std::max<int64_t>(0, pos - s.window + 1) : 0;
      attend_one(q + t * q_stride + h * s.head_dim, k_rows, v_rows, kv_offset, first_key, pos, s, scores.data(),
                 out + t * q_stride + h * s.head_dim);
    }
  });
}

}  // namespace nanoserve::cpu
