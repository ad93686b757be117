// The x86 intrinsics, for the files that use AVX-512 ones. GCC 12's AVX-512 headers start some
// intrinsics from an undefined value (`__m512 __Y = __Y;`), which -Wuninitialized reports wherever
// they are inlined (GCC bug 105593, fixed in GCC 13); the pragmas silence it for the headers alone.
#pragma once

#include <cstdint>

#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#include <immintrin.h>
#pragma GCC diagnostic pop
#else
#include <immintrin.h>
#endif

// The AVX-512 features the int8 kernels are compiled for (the CPU is checked before they run).
#define NANOSERVE_VNNI __attribute__((target("avx512f,avx512bw,avx512dq,avx512vl,avx512vnni,avx2,fma,f16c")))

// The AVX-512 features of the bf16 kernels.
#define NANOSERVE_BF16 __attribute__((target("avx512f,avx512bw,avx512dq,avx512vl,avx512bf16,avx2,fma")))

// A tile's sums, R weight rows by C activation rows of 16 float lanes each: set to zero, and at the
// end each output's lanes added up (in _mm512_reduce_add_ps's fixed order) into out[c * n + r].
template <int R, int C>
[[gnu::always_inline]] __attribute__((target("avx512f"))) inline void zero_sums(__m512 (&acc)[R][C]) {
  for (auto& row : acc) {
    for (auto& a : row) a = _mm512_setzero_ps();
  }
}
template <int R, int C>
[[gnu::always_inline]] __attribute__((target("avx512f"))) inline void store_sums(const __m512 (&acc)[R][C], float* out,
                                                                                 int64_t n) {
  for (int r = 0; r < R; ++r) {
    for (int c = 0; c < C; ++c) out[c * n + r] = _mm512_reduce_add_ps(acc[r][c]);
  }
}
