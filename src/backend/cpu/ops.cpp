#include "backend/cpu/ops.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <vector>

#include "formats/quant.h"
#include "util/error.h"
#include "util/thread_pool.h"

namespace nanoserve::cpu {

void load_row(const TensorView& w, int64_t row, float* out) {
  const int64_t cols = w.shape.back();
  const int64_t offset = row * w.stride();
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
    default:  // block-quantized: rows start on a block boundary (the loader checks the shapes)
      dequantize_row(ggml_type_of(w.dtype), w.data + dtype_bytes(w.dtype, offset), out, cols);
      return;
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

void norm(NormKind kind, const float* x, const Norm& params, int64_t rows, int64_t cols, double eps, float* out) {
  std::vector<float> w(static_cast<size_t>(cols)), b(static_cast<size_t>(cols), 0.0f);
  load_row(params.weight, 0, w.data());
  if (kind == NormKind::RmsPlusOne) {
    for (auto& v : w) v += 1.0f;
  }
  if (params.bias.data) load_row(params.bias, 0, b.data());
  for (int64_t r = 0; r < rows; ++r) {
    const float* xr = x + r * cols;
    float* o = out + r * cols;
    double mean = 0;
    if (kind == NormKind::Layer) {
      for (int64_t i = 0; i < cols; ++i) mean += xr[i];
      mean /= static_cast<double>(cols);
    }
    double sum_sq = 0;
    for (int64_t i = 0; i < cols; ++i) sum_sq += (xr[i] - mean) * (xr[i] - mean);
    const float inv = static_cast<float>(1.0 / std::sqrt(sum_sq / static_cast<double>(cols) + eps));
    const float shift = static_cast<float>(mean);
    for (int64_t i = 0; i < cols; ++i) {
      o[i] = w[static_cast<size_t>(i)] * ((xr[i] - shift) * inv) + b[static_cast<size_t>(i)];
    }
  }
}

namespace {
float apply(Activation act, float x) {
  switch (act) {
    case Activation::Silu:
      return x / (1.0f + std::exp(-x));
    case Activation::GeluTanh:
      return 0.5f * x * (1.0f + std::tanh(0.7978845608028654f * (x + 0.044715f * x * x * x)));
  }
  return x;
}
}  // namespace

void act_mul(Activation act, float* gate, const float* up, int64_t n) {
  for (int64_t i = 0; i < n; ++i) gate[i] = apply(act, gate[i]) * up[i];
}

void activate(Activation act, float* x, int64_t n) {
  for (int64_t i = 0; i < n; ++i) x[i] = apply(act, x[i]);
}

void add(float* x, const float* y, int64_t n) {
  for (int64_t i = 0; i < n; ++i) x[i] += y[i];
}

void scale(float* x, float factor, int64_t n) {
  for (int64_t i = 0; i < n; ++i) x[i] *= factor;
}

void softcap(float* x, float cap, int64_t n) {
  for (int64_t i = 0; i < n; ++i) x[i] = std::tanh(x[i] / cap) * cap;
}

void clamp(float* x, float limit, int64_t n) {
  for (int64_t i = 0; i < n; ++i) x[i] = std::clamp(x[i], -limit, limit);
}

namespace {

[[gnu::always_inline]] inline float dot(const float* a, const float* b, int64_t n) {
  float acc[8] = {};
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    for (int j = 0; j < 8; ++j) acc[j] += a[i + j] * b[i + j];
  }
  for (; i < n; ++i) acc[0] += a[i] * b[i];
  return ((acc[0] + acc[4]) + (acc[1] + acc[5])) + ((acc[2] + acc[6]) + (acc[3] + acc[7]));
}

// One query row of one head against positions [first, last]; kv_offset selects the head in a row.
// Compiled for AVX-512, AVX2 and baseline x86-64, one picked for this CPU at start-up.
__attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
void attend_one(const float* q, const float* const* k_rows, const float* const* v_rows, int64_t kv_offset,
                int64_t first, int64_t last, const AttentionParams& a, float* scores, float* out) {
  float max_score = -INFINITY;
  for (int64_t p = first; p <= last; ++p) {
    float s = dot(q, k_rows[p] + kv_offset, a.head_dim) * a.scale;
    if (a.softcap > 0) s = std::tanh(s / a.softcap) * a.softcap;
    scores[p] = s;
    max_score = std::max(max_score, s);
  }
  float sum = 0;
  for (int64_t p = first; p <= last; ++p) {
    scores[p] = std::exp(scores[p] - max_score);
    sum += scores[p];
  }
  const int64_t head_dim = a.head_dim;
  std::fill(out, out + head_dim, 0.0f);
  for (int64_t p = first; p <= last; ++p) {
    const float weight = scores[p] / sum;
    const float* vp = v_rows[p] + kv_offset;
    for (int64_t i = 0; i < head_dim; ++i) out[i] += weight * vp[i];
  }
}

}  // namespace

void attention(const float* q, int64_t tokens, int64_t first_pos, const float* const* k_rows,
               const float* const* v_rows, const AttentionParams& s, float* out) {
  const int64_t group = s.heads / s.kv_heads, q_stride = s.heads * s.head_dim;
  ThreadPool::global().parallel_for(static_cast<size_t>(tokens * s.heads), [&](size_t begin, size_t end) {
    std::vector<float> scores(static_cast<size_t>(first_pos + tokens));
    for (size_t job = begin; job < end; ++job) {
      const int64_t t = static_cast<int64_t>(job) / s.heads, h = static_cast<int64_t>(job) % s.heads;
      const int64_t kv_offset = (h / group) * s.head_dim;
      const int64_t pos = first_pos + t, first_key = s.window > 0 ? std::max<int64_t>(0, pos - s.window + 1) : 0;
      attend_one(q + t * q_stride + h * s.head_dim, k_rows, v_rows, kv_offset, first_key, pos, s, scores.data(),
                 out + t * q_stride + h * s.head_dim);
    }
  });
}

}  // namespace nanoserve::cpu
