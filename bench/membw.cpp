// Memory read bandwidth: every thread sums its slice of a 1 GiB buffer; the best of 5 passes, in
// GB/s (1e9 bytes). The limit decode speed is measured against: a token reads every weight once.
//
//   membw [--threads N]
#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <thread>
#include <vector>

int main(int argc, char** argv) {
  unsigned threads = std::max(1u, std::thread::hardware_concurrency());
  for (int i = 1; i + 1 < argc; ++i) {
    if (std::strcmp(argv[i], "--threads") == 0) threads = static_cast<unsigned>(std::atoi(argv[i + 1]));
  }
  const size_t bytes = size_t{1} << 30, words = bytes / sizeof(uint64_t);
  std::vector<uint64_t> buffer(words, 1);  // written once, so every page is resident
  std::vector<uint64_t> sums(threads);
  double best = 0;
  for (int pass = 0; pass < 5; ++pass) {
    const auto start = std::chrono::steady_clock::now();
    std::vector<std::thread> workers;
    for (unsigned t = 0; t < threads; ++t) {
      workers.emplace_back([&, t] {
        const size_t begin = words / threads * t, end = t + 1 == threads ? words : words / threads * (t + 1);
        uint64_t a = 0, b = 0, c = 0, d = 0;
        for (size_t i = begin; i + 4 <= end; i += 4) {
          a += buffer[i];
          b += buffer[i + 1];
          c += buffer[i + 2];
          d += buffer[i + 3];
        }
        sums[t] = a + b + c + d;
      });
    }
    for (auto& w : workers) w.join();
    const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    best = std::max(best, static_cast<double>(bytes) / seconds / 1e9);
  }
  uint64_t total = 0;
  for (uint64_t s : sums) total += s;
  if (total == 0) return 1;  // keeps the sums alive
  std::printf("%.1f\n", best);
  return 0;
}
