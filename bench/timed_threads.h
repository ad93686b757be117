// What the CPU limit benchmarks (membw, bf16_peak) share: the --threads option and the timing of
// the same work on every thread, the best of 5 passes.
#pragma once

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <thread>
#include <vector>

namespace bench {

// --threads N, or every hardware thread.
inline unsigned threads_option(int argc, char** argv) {
  unsigned threads = std::max(1u, std::thread::hardware_concurrency());
  for (int i = 1; i + 1 < argc; ++i) {
    if (std::strcmp(argv[i], "--threads") == 0) threads = static_cast<unsigned>(std::atoi(argv[i + 1]));
  }
  return threads;
}

// The shortest of 5 passes, in seconds, each running work(t) on threads t = 0 .. threads - 1 at once.
template <class Work>
double best_of_passes(unsigned threads, Work&& work) {
  double best = 0;
  for (int pass = 0; pass < 5; ++pass) {
    const auto start = std::chrono::steady_clock::now();
    std::vector<std::thread> workers;
    for (unsigned t = 0; t < threads; ++t) workers.emplace_back([&work, t] { work(t); });
    for (auto& w : workers) w.join();
    const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    best = pass == 0 ? seconds : std::min(best, seconds);
  }
  return best;
}

}  // namespace bench
