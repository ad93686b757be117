// Decides what runs in each engine step. Running sequences go first (oldest first), then waiting
// ones in arrival order, under a token budget (long prompts are prefilled in chunks) and a sequence
// limit. When blocks run out the newest running sequence is preempted: its blocks are freed and it
// is recomputed later, from the prefix cache where possible.
#pragma once

#include <cstdint>
#include <list>
#include <memory>
#include <span>
#include <vector>

#include "engine/block_manager.h"
#include "engine/sequence.h"
#include "model/kv_cache.h"

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

class Scheduler {
 public:
  // caches: the KV pool's, one per tensor-parallel rank (a copied block is copied in each).
  Scheduler(BlockManager& blocks, std::span<KvCache> caches, SchedulerLimits limits);

  void add(std::unique_ptr<Sequence> sequence);            // to the back of the waiting queue
  void add_running(std::unique_ptr<Sequence> sequence);    // a forked sample, already holding blocks
  std::vector<ScheduledSlice> schedule();
  void computed(Sequence& sequence, int64_t count);        // after the forward pass: publish full blocks
  void finish(Sequence* sequence);                          // frees its blocks and forgets it

  int64_t running() const { return static_cast<int64_t>(running_.size()); }
  int64_t waiting() const { return static_cast<int64_t>(waiting_.size()); }
  int64_t preemptions() const { return preemptions_; }
  std::vector<Sequence*> all();

 private:
  bool reserve(Sequence& s, int64_t positions);  // blocks for positions [0, positions), copy-on-write
  void match_prefix(Sequence& s);
  void free_blocks(Sequence& s);
  bool preempt_newest(const std::vector<ScheduledSlice>& scheduled, Sequence& asking);

  BlockManager& blocks_;
  std::span<KvCache> caches_;
  SchedulerLimits limits_;
  std::list<std::unique_ptr<Sequence>> waiting_, running_;  // running_ in arrival order
  uint64_t next_arrival_ = 0;
  int64_t preemptions_ = 0;
};

}  // namespace nanoserve
