// Float vectors of 8 and 16 lanes in GCC's vector extension, for kernels compiled once per kernel
// level (target attributes or clones): the same source becomes AVX-512, AVX2 or SSE code.
#pragma once

#include <cstdint>
#include <cstring>

namespace nanoserve::cpu {

typedef float v8 __attribute__((vector_size(32)));
typedef float v16 __attribute__((vector_size(64)));

// Vectors are passed by reference: by value they would change the ABI between the variants.
template <typename V>
[[gnu::always_inline]] inline void load(V& v, const float* p) {
  std::memcpy(&v, p, sizeof v);
}
template <typename V>
[[gnu::always_inline]] inline void store(float* p, const V& v) {
  std::memcpy(p, &v, sizeof v);
}

// Lanes summed pairwise, in a fixed order.
[[gnu::always_inline]] inline float sum_lanes(const v8& v) {
  return ((v[0] + v[4]) + (v[1] + v[5])) + ((v[2] + v[6]) + (v[3] + v[7]));
}
[[gnu::always_inline]] inline float sum_lanes(const v16& v) {
  v8 low, high;
  std::memcpy(&low, &v, sizeof low);
  std::memcpy(&high, reinterpret_cast<const char*>(&v) + sizeof low, sizeof high);
  return sum_lanes(v8(low + high));
}

// The integer vector of a float vector's shape.
template <typename V>
struct IntLanes {
  typedef int32_t type __attribute__((vector_size(sizeof(V))));
};

// x = e^x in every lane: x = n ln 2 + r with |r| <= ln 2 / 2, e^r by Cephes' single-precision
// polynomial, times 2^n set in the exponent bits: within 1 ulp of e^x over [-87, 88] (checked at
// every 0.0003), as libm's expf. Inputs are clamped to that range (below, e^-87 = 1.6e-38
// stands in for smaller values; above, results stay finite); NaN stays NaN. One arithmetic for
// every lane, so a value does not depend on where it sits.
template <typename V>
[[gnu::always_inline]] inline void exp_lanes(V& x) {
  using I = typename IntLanes<V>::type;
  const V nan_lanes = x;
  x = x < -87.0f ? V{} - 87.0f : x;
  x = x > 88.0f ? V{} + 88.0f : x;
  V n = x * 1.44269504088896341f + 0.5f;  // floor(x / ln 2 + 1/2)
  const V truncated = __builtin_convertvector(__builtin_convertvector(n, I), V);
  n = truncated > n ? truncated - 1.0f : truncated;
  const V r = (x - n * 0.693359375f) - n * -2.12194440e-4f;  // ln 2 in two parts
  V p = r * 1.9875691500e-4f + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  const V e_r = p * (r * r) + r + 1.0f;
  const I bits = (__builtin_convertvector(n, I) + 127) << 23;
  V scale;
  std::memcpy(&scale, &bits, sizeof scale);
  x = nan_lanes != nan_lanes ? nan_lanes : e_r * scale;
}

// f(v) over x[0, n) in 16-lane pieces; the last piece is padded, so each value takes the same
// arithmetic wherever it sits in x.
template <typename F>
[[gnu::always_inline]] inline void each_16(float* x, int64_t n, F f) {
  int64_t i = 0;
  for (; i + 16 <= n; i += 16) {
    v16 v;
    load(v, x + i);
    f(v, i);
    store(x + i, v);
  }
  if (i == n) return;
  float padded[16] = {};
  std::memcpy(padded, x + i, static_cast<size_t>(n - i) * sizeof(float));
  v16 v;
  load(v, padded);
  f(v, i);
  store(padded, v);
  std::memcpy(x + i, padded, static_cast<size_t>(n - i) * sizeof(float));
}

}  // namespace nanoserve::cpu
