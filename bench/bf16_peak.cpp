// The CPU's bf16 dot-product peak: every thread runs vdpbf16ps (32 bf16 products a step) on 16
// independent register accumulators, the best of 5 passes, in GFLOP/s (2 per product). The limit
// prompt processing of BF16 weights is measured against; prints 0 where the CPU has no AVX512_BF16.
//
//   bf16_peak [--threads N]
#include <cstdio>
#include <vector>

#include "backend/cpu/avx512.h"  // the intrinsics, without GCC 12's false uninitialized warnings
#include "timed_threads.h"

namespace {

constexpr long kSteps = 50'000'000;  // of 16 instructions

// Lane sums after kSteps steps of 16 vdpbf16ps each (kept, so the loop is not removed).
__attribute__((target("avx512f,avx512bf16"))) float run_steps() {
  __m512 acc[16];
  for (auto& a : acc) a = _mm512_setzero_ps();
  auto w = reinterpret_cast<__m512bh>(_mm512_set1_epi16(0x3f80));  // 1.0
  const auto x = reinterpret_cast<__m512bh>(_mm512_set1_epi16(0x3c00));
  for (long i = 0; i < kSteps; ++i) {
#pragma GCC unroll 16
    for (auto& a : acc) a = _mm512_dpbf16_ps(a, w, x);
    __asm__ volatile("" : "+v"(w));  // an input the compiler cannot see through
  }
  float sum = 0;
  for (const auto& a : acc) sum += _mm512_reduce_add_ps(a);
  return sum;
}

}  // namespace

int main(int argc, char** argv) {
  const unsigned threads = bench::threads_option(argc, argv);
  __builtin_cpu_init();
  if (!__builtin_cpu_supports("avx512bf16")) {
    std::printf("0\n");
    return 0;
  }
  std::vector<float> sums(threads);
  const double seconds = bench::best_of_passes(threads, [&](unsigned t) { sums[t] = run_steps(); });
  for (float s : sums) {
    if (s == 0) return 1;  // keeps the sums alive
  }
  std::printf("%.0f\n", static_cast<double>(threads) * kSteps * 16 * 32 * 2 / seconds / 1e9);
  return 0;
}
