#include "backend/cpu/ops.h"

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstring>
#include <vector>

#include "backend/cpu/lanes.h"
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
    case DType::I64: break;
    default:  // block-quantized: rows start on a block boundary (the loader checks the shapes)
      dequantize_row(ggml_type_of(w.dtype), w.data + dtype_bytes(w.dtype, offset), out, cols);
      return;
  }
  fail("{}: dtype {} is not a weight type", w.name, dtype_name(w.dtype));
}

void embed(const TensorView& table, std::span<const int32_t> tokens, float* out) {
  const int64_t vocab = table.shape[0], hidden = table.shape[1];
  for (size_t t = 0; t < tokens.size(); ++t) {
    float* row = out + static_cast<int64_t>(t) * hidden;
    if (tokens[t] == -1) {  // a row another rank's share of the vocabulary holds
      std::fill(row, row + hidden, 0.0f);
      continue;
    }
    if (tokens[t] < 0 || tokens[t] >= vocab)
      fail("token id {} is outside the vocabulary of {} tokens", tokens[t], vocab);
    load_row(table, tokens[t], row);
  }
}

namespace {

// Element-wise work below this many values runs on the calling thread: sharing it costs more than
// it saves (a decode step's vectors). Above it, each thread takes a contiguous range of items.
constexpr int64_t kShareAbove = 16384;

template <typename Fn>
void for_ranges(int64_t items, int64_t values_each, Fn&& fn) {
  if (items * values_each < kShareAbove) return fn(int64_t{0}, items);
  ThreadPool::global().parallel_for(static_cast<size_t>(items), [&](size_t begin, size_t end) {
    fn(static_cast<int64_t>(begin), static_cast<int64_t>(end));
  });
}

void norm_row(NormKind kind, const float* x, const float* w, const float* b, int64_t cols, double eps, float* out) {
  double mean = 0;
  if (kind == NormKind::Layer) {
    for (int64_t i = 0; i < cols; ++i) mean += x[i];
    mean /= static_cast<double>(cols);
  }
  double sum_sq = 0;
  for (int64_t i = 0; i < cols; ++i) sum_sq += (x[i] - mean) * (x[i] - mean);
  const float inv = static_cast<float>(1.0 / std::sqrt(sum_sq / static_cast<double>(cols) + eps));
  const float shift = static_cast<float>(mean);
  for (int64_t i = 0; i < cols; ++i) out[i] = w[i] * ((x[i] - shift) * inv) + b[i];
}

float apply(Activation act, float x) {
  switch (act) {
    case Activation::Silu: return x / (1.0f + std::exp(-x));
    case Activation::GeluTanh: return 0.5f * x * (1.0f + std::tanh(0.7978845608028654f * (x + 0.044715f * x * x * x)));
  }
  return x;
}

// fn(i) for every i < n, shared between threads when n is large.
template <typename Fn>
void each_value(int64_t n, Fn&& fn) {
  for_ranges(n, 1, [&](int64_t first, int64_t end) {
    for (int64_t i = first; i < end; ++i) fn(i);
  });
}

}  // namespace

void norm(NormKind kind, const float* x, const Norm& params, int64_t rows, int64_t cols, double eps, float* out) {
  std::vector<float> w(static_cast<size_t>(cols)), b(static_cast<size_t>(cols), 0.0f);
  load_row(params.weight, 0, w.data());
  if (kind == NormKind::RmsPlusOne) {
    for (auto& v : w) v += 1.0f;
  }
  if (params.bias.data) load_row(params.bias, 0, b.data());
  for_ranges(rows, cols, [&](int64_t first, int64_t end) {
    for (int64_t r = first; r < end; ++r) norm_row(kind, x + r * cols, w.data(), b.data(), cols, eps, out + r * cols);
  });
}

namespace {
// gate = silu(gate) * up = gate / (1 + e^-gate) * up, 16 values at a time.
__attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default"))) void silu_mul(float* gate,
                                                                                            const float* up,
                                                                                            int64_t n) {
  each_16(gate, n, [&](v16& g, int64_t at) {
    v16 e = -g, u{};
    exp_lanes(e);
    std::memcpy(&u, up + at, static_cast<size_t>(std::min<int64_t>(16, n - at)) * sizeof(float));
    g = g / (1.0f + e) * u;
  });
}
}  // namespace

void act_mul(Activation act, float* gate, const float* up, int64_t n) {
  if (act == Activation::Silu) {
    return for_ranges(n, 1, [&](int64_t first, int64_t end) { silu_mul(gate + first, up + first, end - first); });
  }
  each_value(n, [&](int64_t i) { gate[i] = apply(act, gate[i]) * up[i]; });
}

void activate(Activation act, float* x, int64_t n) {
  each_value(n, [&](int64_t i) { x[i] = apply(act, x[i]); });
}

void add(float* x, const float* y, int64_t n) {
  each_value(n, [&](int64_t i) { x[i] += y[i]; });
}

void scale(float* x, float factor, int64_t n) {
  each_value(n, [&](int64_t i) { x[i] *= factor; });
}

void softcap(float* x, float cap, int64_t n) {
  each_value(n, [&](int64_t i) { x[i] = std::tanh(x[i] / cap) * cap; });
}

void rope(float* x, const RopeTable& table, int64_t heads, int64_t head_dim, RopePairs pairs) {
  const int64_t half = table.rotary_dim / 2;
  for_ranges(table.tokens(), heads * head_dim, [&](int64_t first, int64_t end) {
    apply_rope(x + first * heads * head_dim, end - first, heads, head_dim, table.cos.data() + first * half,
               table.sin.data() + first * half, table.rotary_dim, pairs);
  });
}

void clamp(float* x, float limit, int64_t n) {
  each_value(n, [&](int64_t i) { x[i] = std::clamp(x[i], -limit, limit); });
}

// A word at a time: an empty word is skipped, a full one scanned whole, a mixed one bit by bit (a
// grammar's mask is mostly one or the other).
int32_t argmax_allowed(const float* row, int64_t cols, const uint64_t* allowed) {
  int64_t best = -1;
  auto consider = [&](int64_t c) {
    if (best < 0 || row[c] > row[best]) best = c;
  };
  for (int64_t base = 0; base < cols; base += 64) {
    const uint64_t word = allowed[base >> 6];
    if (word == ~uint64_t{0} && base + 64 <= cols) {
      consider(std::max_element(row + base, row + base + 64) - row);
      continue;
    }
    for (uint64_t bits = word; bits; bits &= bits - 1) {
      const int64_t c = base + std::countr_zero(bits);
      if (c < cols) consider(c);
    }
  }
  return static_cast<int32_t>(best);
}

}  // namespace nanoserve::cpu
