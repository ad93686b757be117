// Float vectors of 8 and 16 lanes in GCC's vector extension, for kernels compiled once per kernel
// level (target attributes or clones): the same source becomes AVX-512, AVX2 or SSE code.
#pragma once

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

}  // namespace nanoserve::cpu
