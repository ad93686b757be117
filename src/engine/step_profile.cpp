#include "engine/step_profile.h"

#include <fmt/format.h>

#include <cstdlib>

namespace nanoserve {

StepProfile::StepProfile() : enabled_(std::getenv("NANOSERVE_ENGINE_PROFILE") != nullptr) {}

StepProfile::~StepProfile() {
  if (!enabled_ || totals_.empty()) return;
  fmt::print(stderr, "engine thread time by phase:\n");
  for (const auto& [phase, t] : totals_) {
    fmt::print(stderr, "  {:<16} {:>10.1f} ms {:>9} calls {:>9.3f} ms/call\n", phase, t.ms, t.calls,
               t.ms / static_cast<double>(t.calls));
  }
}

StepProfile::Scope::Scope(StepProfile* profile, const char* phase)
    : profile_(profile), phase_(phase), start_(profile ? std::chrono::steady_clock::now() : decltype(start_)()) {}

StepProfile::Scope::~Scope() {
  if (!profile_) return;
  Total& t = profile_->totals_[phase_];
  t.ms += std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start_).count();
  ++t.calls;
}

}  // namespace nanoserve
