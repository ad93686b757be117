// The collective operations of tensor parallelism: every rank calls each one in the same order, on
// its own backend's memory, and returns once its result is there (or queued on its stream, on a
// GPU). Every rank receives the same bits, so that the replicated parts of the forward pass
// (residual stream, norms, sampling) stay identical across ranks. The implementations live in
// parallel/ (threads for CPU backends, NCCL for CUDA ones); the forward pass sees only this.
#pragma once

#include <cstdint>

namespace nanoserve {

class Collective {
 public:
  virtual ~Collective() = default;
  // data [count] := the sum over ranks of every rank's data, in place.
  virtual void all_reduce_sum(float* data, int64_t count) = 0;
  // all [ranks, count] := every rank's mine [count], in rank order.
  virtual void all_gather(const float* mine, int64_t count, float* all) = 0;
};

// What a rank's forward pass needs to know of the split (model/transformer.h reads it;
// parallel/shard.h makes the split).
struct RankShare {
  int rank = 0, ranks = 1;
  Collective* collective = nullptr;  // null with one rank
  bool vocab_parallel = false;       // embedding and LM head hold only rows [vocab_begin, vocab_begin + rows)
  int64_t vocab_begin = 0;
};

}  // namespace nanoserve
