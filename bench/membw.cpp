// Memory read bandwidth: every thread sums its slice of a 1 GiB buffer; the best of 5 passes, in
// GB/s (1e9 bytes). The limit decode speed is measured against: a token reads every weight once.
// With AVX-512 the sums take 64-byte loads, as the decode kernels do; a loop of 8-byte loads reads
// about a quarter slower on the AVX-512 machine of docs/benchmarks.md (20.5 against 26.6 GB/s),
// and prefetching ahead (1 to 4 KiB) changes nothing there.
//
//   membw [--threads N]
#include <immintrin.h>

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <vector>

#include "timed_threads.h"

namespace {

// The sum of words [begin, end), four at a time into four sums.
uint64_t sum_words(const uint64_t* words, size_t begin, size_t end) {
  uint64_t a = 0, b = 0, c = 0, d = 0;
  for (size_t i = begin; i + 4 <= end; i += 4) {
    a += words[i];
    b += words[i + 1];
    c += words[i + 2];
    d += words[i + 3];
  }
  return a + b + c + d;
}

// The same, 32 words (four 64-byte lines) a step; begin is a multiple of 8 (64-byte aligned).
__attribute__((target("avx512f"))) uint64_t sum_words_avx512(const uint64_t* words, size_t begin, size_t end) {
  __m512i a = _mm512_setzero_si512(), b = a, c = a, d = a;
  for (size_t i = begin; i + 32 <= end; i += 32) {
    a = _mm512_add_epi64(a, _mm512_load_si512(words + i));
    b = _mm512_add_epi64(b, _mm512_load_si512(words + i + 8));
    c = _mm512_add_epi64(c, _mm512_load_si512(words + i + 16));
    d = _mm512_add_epi64(d, _mm512_load_si512(words + i + 24));
  }
  alignas(64) uint64_t lanes[8];
  _mm512_store_si512(lanes, _mm512_add_epi64(_mm512_add_epi64(a, b), _mm512_add_epi64(c, d)));
  uint64_t total = 0;
  for (uint64_t lane : lanes) total += lane;
  return total;
}

}  // namespace

int main(int argc, char** argv) {
  const unsigned threads = bench::threads_option(argc, argv);
  const size_t bytes = size_t{1} << 30, words = bytes / sizeof(uint64_t);
  auto* buffer = static_cast<uint64_t*>(std::aligned_alloc(64, bytes));
  if (!buffer) return 1;
  std::fill(buffer, buffer + words, uint64_t{1});  // written once, so every page is resident
  __builtin_cpu_init();
  const auto sum = __builtin_cpu_supports("avx512f") ? sum_words_avx512 : sum_words;
  std::vector<uint64_t> sums(threads);
  const double seconds = bench::best_of_passes(threads, [&](unsigned t) {
    const size_t slice = words / threads / 32 * 32;  // whole 256-byte steps
    const size_t begin = slice * t, end = t + 1 == threads ? words : slice * (t + 1);
    sums[t] = sum(buffer, begin, end);
  });
  uint64_t total = 0;
  for (uint64_t s : sums) total += s;
  std::free(buffer);
  if (total == 0) return 1;  // keeps the sums alive
  std::printf("%.1f\n", static_cast<double>(bytes) / seconds / 1e9);
  return 0;
}
