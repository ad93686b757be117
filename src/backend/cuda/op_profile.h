// NANOSERVE_CUDA_PROFILE=1: the GPU time of each backend operation, from CUDA events recorded
// around it on the stream, summed by name and printed to stderr when the backend closes. Unset, it
// records nothing.
#pragma once

#include <cuda_runtime.h>

#include <map>
#include <string>
#include <vector>

namespace nanoserve::cuda {

class OpProfile {
 public:
  explicit OpProfile(cudaStream_t stream);
  ~OpProfile();
  OpProfile(const OpProfile&) = delete;
  OpProfile& operator=(const OpProfile&) = delete;

  // Times from its construction to its end on the stream.
  class Scope {
   public:
    Scope(OpProfile* profile, const char* name);
    ~Scope();
    Scope(const Scope&) = delete;
    Scope& operator=(const Scope&) = delete;

   private:
    OpProfile* profile_;
    const char* name_;
    cudaEvent_t start_ = nullptr;
  };
  Scope time(const char* name) { return Scope(enabled_ ? this : nullptr, name); }
  bool enabled() const { return enabled_; }
  // Adds the operations the stream has finished to the totals (call after a synchronization).
  void collect();

 private:
  cudaEvent_t event();

  struct Pending {
    const char* name;
    cudaEvent_t start, end;
  };
  struct Total {
    int64_t calls = 0;
    double ms = 0;
  };
  bool enabled_;
  cudaStream_t stream_;
  std::vector<Pending> pending_;
  std::vector<cudaEvent_t> spare_;
  std::map<std::string, Total> totals_;
};

}  // namespace nanoserve::cuda
