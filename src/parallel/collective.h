// The collective operations of tensor parallelism: every rank calls each one in
// the same order, on its own backend's memory, and returns once its result is
// there (or queued on its stream, on a GPU). Every rank receives the same bits,
// so that the replicated parts of the forward pass (residual stream, norms,
// sampling) stay identical across ranks.
#pragma once

#include <cstdint>
#include <memory>
#include <vector>

namespace nanoserve {

class Backend;

class Collective {
 public:
  virtual ~Collective() = default;
  // data [count] := the sum over ranks of every rank's data, in place.
  virtual void all_reduce_sum(float* data, int64_t count) = 0;
  // all [ranks, count] := every rank's mine [count], in rank order.
  virtual void all_gather(const float* mine, int64_t count, float* all) = 0;
};

// One collective per rank, joining the ranks' backends (all of one kind):
// threads exchanging host memory for CPU backends, NCCL for CUDA backends.
// Throws Error when the kind has no collectives in this build (CUDA without
// NCCL).
std::vector<std::unique_ptr<Collective>> make_collectives(const std::vector<Backend*>& backends);

}  // namespace nanoserve
