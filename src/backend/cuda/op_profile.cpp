#include "backend/cuda/op_profile.h"

#include <fmt/format.h>

#include <algorithm>
#include <cstdlib>

namespace nanoserve::cuda {

OpProfile::OpProfile(cudaStream_t stream)
    : enabled_(std::getenv("NANOSERVE_CUDA_PROFILE") != nullptr), stream_(stream) {}

OpProfile::~OpProfile() {
  if (!enabled_) return;
  cudaStreamSynchronize(stream_);
  collect();
  std::vector<std::pair<std::string, Total>> rows(totals_.begin(), totals_.end());
  std::sort(rows.begin(), rows.end(), [](const auto& a, const auto& b) { return a.second.ms > b.second.ms; });
  double all = 0;
  for (const auto& [_, t] : rows) all += t.ms;
  fmt::print(stderr, "GPU time by operation ({:.1f} ms in all):\n", all);
  for (const auto& [name, t] : rows) {
    fmt::print(stderr, "  {:<18} {:>10.2f} ms {:>5.1f}% {:>9} calls {:>9.1f} us/call\n", name, t.ms, 100 * t.ms / all,
               t.calls, 1e3 * t.ms / static_cast<double>(t.calls));
  }
  for (cudaEvent_t e : spare_) cudaEventDestroy(e);
}

cudaEvent_t OpProfile::event() {
  if (spare_.empty()) {
    cudaEvent_t e;
    cudaEventCreate(&e);
    return e;
  }
  cudaEvent_t e = spare_.back();
  spare_.pop_back();
  return e;
}

void OpProfile::collect() {
  for (const Pending& p : pending_) {
    float ms = 0;
    if (cudaEventElapsedTime(&ms, p.start, p.end) == cudaSuccess) {
      Total& t = totals_[p.name];
      ++t.calls;
      t.ms += ms;
    }
    spare_.push_back(p.start);
    spare_.push_back(p.end);
  }
  pending_.clear();
}

OpProfile::Scope::Scope(OpProfile* profile, const char* name) : profile_(profile), name_(name) {
  if (!profile_) return;
  start_ = profile_->event();
  cudaEventRecord(start_, profile_->stream_);
}

OpProfile::Scope::~Scope() {
  if (!profile_) return;
  cudaEvent_t end = profile_->event();
  cudaEventRecord(end, profile_->stream_);
  profile_->pending_.push_back({name_, start_, end});
}

}  // namespace nanoserve::cuda
