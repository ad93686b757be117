// Decides what runs in each engine step. Running sequences go first (oldest first), then waiting
// ones in arrival order, under a token budget (long prompts are prefilled in chunks) and a sequence
// limit. When blocks run out the newest running sequence is preempted: its blocks are freed and it
// is recomputed later, from the prefix cache where possible. It only decides: the KV blocks it
// wants copied come back with the plan, and the engine copies them before the step runs.
#pragma once

#include <cstdint>
#include <list>
#include <memory>
#include <span>
#include <vector>

#include "engine/block_manager.h"
#include "engine/sequence.h"

namespace nanoserve {

struct SchedulerLimits {
  int64_t max_num_seqs = 256;        // running at once
  int64_t max_batched_tokens = 512;  // tokens per step, prefill chunks included
};

struct ScheduledSlice {
  Sequence* sequence;
  int64_t count;      // tokens to run, from sequence->computed
  bool wants_logits;  // the slice reaches the end of the sequence's tokens
};

// Copy-on-write: a block shared by forked samples is copied before one of them writes into it.
struct BlockCopy {
  int32_t from, to;
};

struct StepPlan {
  std::vector<ScheduledSlice> slices;
  std::vector<BlockCopy> copies;  // to make in every rank's KV cache, in order, before the step
  bool empty() const { return slices.empty(); }
};

class Scheduler {
 public:
  Scheduler(BlockManager& blocks, SchedulerLimits limits);

  void add(std::unique_ptr<Sequence> sequence);          // to the back of the waiting queue
  void add_running(std::unique_ptr<Sequence> sequence);  // a forked sample, already holding blocks
  StepPlan schedule();
  void computed(Sequence& sequence, int64_t count);  // after the forward pass: publish full blocks
  void finish(Sequence* sequence);                   // frees its blocks and forgets it

  int64_t running() const { return static_cast<int64_t>(running_.size()); }
  int64_t waiting() const { return static_cast<int64_t>(waiting_.size()); }
  int64_t preemptions() const { return preemptions_; }
  std::vector<Sequence*> all();

 private:
  // Blocks for positions [0, positions); a shared block about to be written is replaced by a copy.
  bool reserve(Sequence& s, int64_t positions, std::vector<BlockCopy>& copies);
  void match_prefix(Sequence& s);
  void free_blocks(Sequence& s);
  bool preempt_newest(const std::vector<ScheduledSlice>& scheduled, Sequence& asking);

  BlockManager& blocks_;
  SchedulerLimits limits_;
  std::list<std::unique_ptr<Sequence>> waiting_, running_;  // running_ in arrival order
  uint64_t next_arrival_ = 0;
  int64_t preemptions_ = 0;
};

}  // namespace nanoserve
