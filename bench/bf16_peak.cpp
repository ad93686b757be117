// The CPU's bf16 dot-product peak: every thread runs vdpbf16ps (32 bf16 products a step) on 16
// independent register accumulators, the best of 5 passes, in GFLOP/s (2 per product). The limit
// prompt processing of BF16 weights is measured against; prints 0 where the CPU has no AVX512_BF16.
//
//   bf16_peak [--threads N]
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <thread>
#include <vector>

#include "backend/cpu/avx512.h"  // the intrinsics, without GCC 12's false uninitialized warnings

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
  unsigned threads = std::max(1u, std::thread::hardware_concurrency());
  for (int i = 1; i + 1 < argc; ++i) {
    if (std::strcmp(argv[i], "--threads") == 0) threads = static_cast<unsigned>(std::atoi(argv[i + 1]));
  }
  __builtin_cpu_init();
  if (!__builtin_cpu_supports("avx512bf16")) {
    std::printf("0\n");
    return 0;
  }
  std::vector<float> sums(threads);
  double best = 0;
  for (int pass = 0; pass < 5; ++pass) {
    const auto start = std::chrono::steady_clock::now();
    std::vector<std::thread> workers;
    for (unsigned t = 0; t < threads; ++t) workers.emplace_back([&, t] { sums[t] = run_steps(); });
    for (auto& w : workers) w.join();
    const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    best = std::max(best, static_cast<double>(threads) * kSteps * 16 * 32 * 2 / seconds / 1e9);
  }
  for (float s : sums) {
    if (s == 0) return 1;  // keeps the sums alive
  }
  std::printf("%.0f\n", best);
  return 0;
}
