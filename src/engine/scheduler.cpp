#include "engine/scheduler.h"

#include <algorithm>

#include "util/error.h"

namespace nanoserve {

Scheduler::Scheduler(BlockManager& blocks, SchedulerLimits limits) : blocks_(blocks), limits_(limits) {}

void Scheduler::add(std::unique_ptr<Sequence> s) {
  s->arrival = next_arrival_++;
  waiting_.push_back(std::move(s));
}

void Scheduler::add_running(std::unique_ptr<Sequence> s) {
  s->arrival = next_arrival_++;
  running_.push_back(std::move(s));
}

std::vector<Sequence*> Scheduler::all() {
  std::vector<Sequence*> out;
  for (auto* queue : {&running_, &waiting_}) {
    for (auto& s : *queue) out.push_back(s.get());
  }
  return out;
}

void Scheduler::free_blocks(Sequence& s) {
  for (int32_t b : s.blocks) blocks_.release(b);
  s.blocks.clear();
  s.computed = 0;
  s.published = 0;
  s.chain_hash = 0;
}

bool Scheduler::reserve(Sequence& s, int64_t positions, std::vector<BlockCopy>& copies) {
  const int64_t size = blocks_.block_size();
  // The block the next key is written to must not be shared (forked samples share the prompt's last block).
  const auto write_block = static_cast<size_t>(s.computed / size);
  if (write_block < s.blocks.size() && blocks_.ref_count(s.blocks[write_block]) > 1) {
    auto copy = blocks_.allocate();
    if (!copy) return false;
    copies.push_back({s.blocks[write_block], *copy});
    blocks_.release(s.blocks[write_block]);
    s.blocks[write_block] = *copy;
  }
  while (static_cast<int64_t>(s.blocks.size()) * size < positions) {
    auto b = blocks_.allocate();
    if (!b) return false;
    s.blocks.push_back(*b);
  }
  return true;
}

// Reuses published blocks for the longest cached prefix, leaving at least one token to compute
// (its logits are needed). Not for an embedding: it pools the hidden state of every position.
void Scheduler::match_prefix(Sequence& s) {
  if (s.pooler) return;
  const int64_t size = blocks_.block_size();
  const int64_t full = (static_cast<int64_t>(s.tokens.size()) - 1) / size;
  for (int64_t i = 0; i < full; ++i) {
    std::span<const int32_t> tokens(s.tokens.data() + i * size, static_cast<size_t>(size));
    const uint64_t h = BlockManager::hash(s.chain_hash, tokens);
    auto b = blocks_.lookup(h, tokens);
    if (!b) break;
    s.blocks.push_back(*b);
    s.chain_hash = h;
    s.published = i + 1;
    s.computed += size;
  }
  if (s.generated() == 0) s.cached_prompt_tokens = s.computed;
}

bool Scheduler::preempt_newest(const std::vector<ScheduledSlice>& scheduled, Sequence& asking) {
  for (auto it = running_.rbegin(); it != running_.rend(); ++it) {
    Sequence* victim = it->get();
    const bool busy =
        std::any_of(scheduled.begin(), scheduled.end(), [&](const auto& x) { return x.sequence == victim; });
    if (busy) continue;
    free_blocks(*victim);
    ++preemptions_;
    waiting_.push_front(std::move(*std::next(it).base()));
    running_.erase(std::next(it).base());
    return victim != &asking;
  }
  return false;
}

StepPlan Scheduler::schedule() {
  StepPlan plan;
  std::vector<ScheduledSlice>& out = plan.slices;
  int64_t budget = limits_.max_batched_tokens;
  // Running sequences, oldest first. Iterating over a snapshot: preemption moves entries away.
  std::vector<Sequence*> snapshot;
  for (auto& s : running_) snapshot.push_back(s.get());
  for (Sequence* s : snapshot) {
    if (budget == 0) break;
    if (std::none_of(running_.begin(), running_.end(), [&](const auto& r) { return r.get() == s; })) continue;
    const int64_t count = std::min(s->pending(), budget);
    bool fits = reserve(*s, s->computed + count, plan.copies);
    while (!fits && preempt_newest(out, *s)) fits = reserve(*s, s->computed + count, plan.copies);
    if (!fits) continue;  // s itself was preempted
    budget -= count;
    out.push_back({s, count, s->computed + count == static_cast<int64_t>(s->tokens.size())});
  }
  // Then waiting sequences in order, while there is room.
  while (!waiting_.empty() && budget > 0 && running() < limits_.max_num_seqs) {
    Sequence& s = *waiting_.front();
    if (s.blocks.empty()) match_prefix(s);
    const int64_t count = std::min(s.pending(), budget);
    if (!reserve(s, s.computed + count, plan.copies)) {
      free_blocks(s);  // do not hold blocks while waiting
      break;
    }
    budget -= count;
    out.push_back({&s, count, s.computed + count == static_cast<int64_t>(s.tokens.size())});
    running_.push_back(std::move(waiting_.front()));
    waiting_.pop_front();
  }
  return plan;
}

void Scheduler::computed(Sequence& s, int64_t count) {
  s.computed += count;
  const int64_t size = blocks_.block_size();
  while ((s.published + 1) * size <= s.computed) {
    std::span<const int32_t> tokens(s.tokens.data() + s.published * size, static_cast<size_t>(size));
    s.chain_hash = BlockManager::hash(s.chain_hash, tokens);
    blocks_.publish(s.blocks[static_cast<size_t>(s.published)], s.chain_hash, tokens);
    ++s.published;
  }
}

void Scheduler::finish(Sequence* s) {
  free_blocks(*s);
  for (auto* queue : {&running_, &waiting_}) {
    auto it = std::find_if(queue->begin(), queue->end(), [&](const auto& x) { return x.get() == s; });
    if (it != queue->end()) {
      queue->erase(it);
      return;
    }
  }
  fail("internal: finished a sequence the scheduler does not hold");
}

}  // namespace nanoserve
