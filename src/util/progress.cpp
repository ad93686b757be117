#include "util/progress.h"

#include <unistd.h>

#include <cstdio>

namespace nanoserve {

ProgressBar::ProgressBar(std::string label, uint64_t total)
    : label_(std::move(label)),
      total_(total),
      enabled_(::isatty(STDERR_FILENO) == 1),
      start_(std::chrono::steady_clock::now()),
      last_draw_(start_) {}

ProgressBar::~ProgressBar() {
  if (!enabled_) return;
  done_ = total_;
  draw();
  std::fputc('\n', stderr);
}

void ProgressBar::advance(uint64_t amount) {
  done_ += amount;
  auto now = std::chrono::steady_clock::now();
  if (enabled_ && now - last_draw_ > std::chrono::milliseconds(100)) {
    last_draw_ = now;
    draw();
  }
}

void ProgressBar::draw() {
  constexpr int kWidth = 30;
  double fraction = total_ ? static_cast<double>(done_) / static_cast<double>(total_) : 1.0;
  int filled = static_cast<int>(fraction * kWidth);
  double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
  std::fprintf(stderr, "\r%s [%.*s%*s] %3d%% %.1f/%.1f MiB %.1fs", label_.c_str(), filled,
               "==============================", kWidth - filled, "", static_cast<int>(fraction * 100),
               static_cast<double>(done_) / (1 << 20), static_cast<double>(total_) / (1 << 20), seconds);
  std::fflush(stderr);
}

}  // namespace nanoserve
