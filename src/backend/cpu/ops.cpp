#include "backend/cpu/ops.h"

#include <algorithm>
#include <cmath>
#include <vector>

#include "util/error.h"
#include "util/thread_pool.h"

namespace nanoserve::cpu {

void load_row(const TensorView& w, int64_t row, float* out) {
  const int64_t cols = w.shape.back();
  const size_t offset = static_cast<size_t>(row * cols);
  switch (w.dtype) {
    case DType::F32:
      std::memcpy(out, reinterpret_cast<const float*>(w.data) + offset, static_cast<size_t>(cols) * sizeof(float));
      return;
    case DType::BF16: {
      const auto* src = reinterpret_cast<const uint16_t*>(w.data) + offset;
      for (int64_t i = 0; i < cols; ++i) out[i] = bf16_to_float(src[i]);
      return;
    }
    case DType::F16: {
      const auto* src = reinterpret_cast<const uint16_t*>(w.data) + offset;
      for (int64_t i = 0; i < cols; ++i) out[i] = f16_to_float(src[i]);
      return;
    }
    case DType::I64:
      break;
  }
  fail("{}: dtype {} is not a weight type", w.name, dtype_name(w.dtype));
}

void embed(const TensorView& table, std::span<const int32_t> tokens, float* out) {
  const int64_t vocab = table.shape[0], hidden = table.shape[1];
  for (size_t t = 0; t < tokens.size(); ++t) {
    if (tokens[t] < 0 || tokens[t] >= vocab) fail("token id {} is outside the vocabulary of {} tokens", tokens[t], vocab);
    load_row(table, tokens[t], out + static_cast<int64_t>(t) * hidden);
  }
}

void rms_norm(const float* x, const TensorView& weight, int64_t rows, int64_t cols, double eps, float* out) {
  std::vector<float> w(static_cast<size_t>(cols));
  load_row(weight, 0, w.data());
  for (int64_t r = 0; r < rows; ++r) {
    const float* xr = x + r * cols;
    double sum_sq = 0;
    for (int64_t i = 0; i < cols; ++i) sum_sq += static_cast<double>(xr[i]) * xr[i];
    const float scale = static_cast<float>(1.0 / std::sqrt(sum_sq / static_cast<double>(cols) + eps));
    for (int64_t i = 0; i < cols; ++i) out[r * cols + i] = w[static_cast<size_t>(i)] * (xr[i] * scale);
  }
}

void silu_mul(float* gate, const float* up, int64_t n) {
  for (int64_t i = 0; i < n; ++i) gate[i] = gate[i] / (1.0f + std::exp(-gate[i])) * up[i];
}

void add(float* x, const float* y, int64_t n) {
  for (int64_t i = 0; i < n; ++i) x[i] += y[i];
}

namespace {

float dot(const float* a, const float* b, int64_t n) {
  float acc[8] = {};
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    for (int j = 0; j < 8; ++j) acc[j] += a[i + j] * b[i + j];
  }
  for (; i < n; ++i) acc[0] += a[i] * b[i];
  return ((acc[0] + acc[4]) + (acc[1] + acc[5])) + ((acc[2] + acc[6]) + (acc[3] + acc[7]));
}

// One query row of one head against positions [0, last].
void attend_one(const float* q, const float* k, const float* v, int64_t last, int64_t kv_stride, int64_t head_dim,
                float scale, float* scores, float* out) {
  float max_score = -INFINITY;
  for (int64_t p = 0; p <= last; ++p) {
    scores[p] = dot(q, k + p * kv_stride, head_dim) * scale;
    max_score = std::max(max_score, scores[p]);
  }
  float sum = 0;
  for (int64_t p = 0; p <= last; ++p) {
    scores[p] = std::exp(scores[p] - max_score);
    sum += scores[p];
  }
  std::fill(out, out + head_dim, 0.0f);
  for (int64_t p = 0; p <= last; ++p) {
    const float weight = scores[p] / sum;
    const float* vp = v + p * kv_stride;
    for (int64_t i = 0; i < head_dim; ++i) out[i] += weight * vp[i];
  }
}

}  // namespace

void attention(const float* q, int64_t tokens, int64_t first_pos, const float* k, const float* v,
               const AttentionShape& s, float* out) {
  const int64_t group = s.heads / s.kv_heads, kv_stride = s.kv_heads * s.head_dim, q_stride = s.heads * s.head_dim;
  const float scale = 1.0f / std::sqrt(static_cast<float>(s.head_dim));
  ThreadPool::global().parallel_for(static_cast<size_t>(tokens * s.heads), [&](size_t begin, size_t end) {
    std::vector<float> scores(static_cast<size_t>(first_pos + tokens));
    for (size_t job = begin; job < end; ++job) {
      const int64_t t = static_cast<int64_t>(job) / s.heads, h = static_cast<int64_t>(job) % s.heads;
      const int64_t kv_offset = (h / group) * s.head_dim;
      attend_one(q + t * q_stride + h * s.head_dim, k + kv_offset, v + kv_offset, first_pos + t, kv_stride,
                 s.head_dim, scale, scores.data(), out + t * q_stride + h * s.head_dim);
    }
  });
}

}  // namespace nanoserve::cpu
