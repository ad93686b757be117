// NANOSERVE_ENGINE_PROFILE=1: where the engine thread's time goes, by phase of a step (the forward
// pass, waiting for grammar masks, sampling), summed and printed to stderr when the engine is
// destroyed. With a GPU, the forward pass includes the wait for the device. Unset, it measures
// nothing.
#pragma once

#include <chrono>
#include <cstdint>
#include <map>
#include <string>

namespace nanoserve {

class StepProfile {
 public:
  StepProfile();
  ~StepProfile();
  StepProfile(const StepProfile&) = delete;
  StepProfile& operator=(const StepProfile&) = delete;

  // Adds the time from its construction to its end to `phase`.
  class Scope {
   public:
    Scope(StepProfile* profile, const char* phase);
    ~Scope();
    Scope(const Scope&) = delete;
    Scope& operator=(const Scope&) = delete;

   private:
    StepProfile* profile_;
    const char* phase_;
    std::chrono::steady_clock::time_point start_;
  };
  Scope time(const char* phase) { return Scope(enabled_ ? this : nullptr, phase); }

 private:
  struct Total {
    double ms = 0;
    int64_t calls = 0;
  };
  bool enabled_;
  std::map<std::string, Total> totals_;  // the engine thread's only
};

}  // namespace nanoserve
