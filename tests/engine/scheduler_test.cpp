// The scheduler alone, with no backend: what runs in each step under the token budget and the
// sequence limit, prompts chunked, the newest sequence preempted when blocks run out, a shared
// block copied before a forked sample writes into it, and a cached prefix reused.
#include <gtest/gtest.h>

#include <numeric>

#include "engine/scheduler.h"

namespace nanoserve {
namespace {

constexpr int64_t kBlock = 16;

std::unique_ptr<Sequence> sequence(int64_t prompt, int32_t first_token = 0) {
  auto s = std::make_unique<Sequence>();
  s->tokens.resize(static_cast<size_t>(prompt));
  std::iota(s->tokens.begin(), s->tokens.end(), first_token);
  s->prompt_len = prompt;
  return s;
}

// A new sequence queued in the scheduler, which owns it.
Sequence* add(Scheduler& scheduler, int64_t prompt, int32_t first_token = 0) {
  auto owned = sequence(prompt, first_token);
  Sequence* s = owned.get();
  scheduler.add(std::move(owned));
  return s;
}

// Runs the plan as the engine would: every slice computed, one token appended where it asked for logits.
void run(Scheduler& scheduler, const StepPlan& plan) {
  for (const auto& slice : plan.slices) {
    scheduler.computed(*slice.sequence, slice.count);
    if (slice.wants_logits) slice.sequence->tokens.push_back(7);
  }
}

TEST(Scheduler, ChunksALongPromptUnderTheTokenBudget) {
  BlockManager blocks(64, kBlock, true);
  Scheduler scheduler(blocks, {.max_num_seqs = 8, .max_batched_tokens = 32});
  Sequence* s = add(scheduler, 80);
  std::vector<std::pair<int64_t, bool>> steps;
  for (int i = 0; i < 4; ++i) {
    const StepPlan plan = scheduler.schedule();
    ASSERT_EQ(plan.slices.size(), 1u);
    steps.emplace_back(plan.slices[0].count, plan.slices[0].wants_logits);
    run(scheduler, plan);
  }
  EXPECT_EQ(steps, (std::vector<std::pair<int64_t, bool>>{{32, false}, {32, false}, {16, true}, {1, true}}));
  EXPECT_EQ(s->blocks.size(), 6u);  // 81 positions, then the 82nd's block
}

TEST(Scheduler, AdmitsUpToTheSequenceLimitInArrivalOrder) {
  BlockManager blocks(64, kBlock, true);
  Scheduler scheduler(blocks, {.max_num_seqs = 2, .max_batched_tokens = 512});
  std::vector<Sequence*> seqs;
  for (int i = 0; i < 3; ++i) seqs.push_back(add(scheduler, 10, 100 * i));
  const StepPlan plan = scheduler.schedule();
  ASSERT_EQ(plan.slices.size(), 2u);
  EXPECT_EQ(plan.slices[0].sequence, seqs[0]);
  EXPECT_EQ(plan.slices[1].sequence, seqs[1]);
  EXPECT_EQ(scheduler.running(), 2);
  EXPECT_EQ(scheduler.waiting(), 1);
  EXPECT_TRUE(plan.copies.empty());
}

TEST(Scheduler, PreemptsTheNewestWhenBlocksRunOut) {
  BlockManager blocks(4, kBlock, false);
  Scheduler scheduler(blocks, {.max_num_seqs = 8, .max_batched_tokens = 512});
  Sequence* older = add(scheduler, 30);
  Sequence* newer = add(scheduler, 30, 1000);
  StepPlan plan = scheduler.schedule();
  ASSERT_EQ(plan.slices.size(), 2u);  // 2 blocks each: the pool is full
  EXPECT_EQ(blocks.available_blocks(), 0);
  run(scheduler, plan);
  // Each now has 31 tokens: two more steps fill their second blocks, and at the third the older
  // one's next position needs a third block, which only the newer one's can give.
  for (int i = 0; i < 3; ++i) {
    plan = scheduler.schedule();
    run(scheduler, plan);
  }
  EXPECT_EQ(scheduler.preemptions(), 1);
  EXPECT_EQ(scheduler.waiting(), 1);
  EXPECT_EQ(newer->blocks.size(), 0u) << "the newest gave its blocks back";
  EXPECT_EQ(newer->computed, 0) << "and will be recomputed";
  EXPECT_EQ(older->blocks.size(), 3u);
}

TEST(Scheduler, CopiesASharedBlockBeforeAForkedSampleWritesIntoIt) {
  BlockManager blocks(16, kBlock, true);
  Scheduler scheduler(blocks, {.max_num_seqs = 8, .max_batched_tokens = 512});
  Sequence* p = add(scheduler, 20);
  run(scheduler, scheduler.schedule());  // 20 computed, a 21st token appended; blocks 0 and 1
  // A forked sample shares both blocks, as Engine::fork makes it.
  auto child = std::make_unique<Sequence>();
  child->tokens = p->tokens;
  child->prompt_len = p->prompt_len;
  child->computed = p->computed;
  child->blocks = p->blocks;
  for (int32_t b : child->blocks) blocks.retain(b);
  child->published = p->published;
  child->chain_hash = p->chain_hash;
  Sequence* c = child.get();
  scheduler.add_running(std::move(child));
  const int32_t shared = p->blocks[1];
  const StepPlan plan = scheduler.schedule();
  ASSERT_EQ(plan.slices.size(), 2u);
  // The parent writes position 20 into block 1 first: a copy for it, and the child then holds
  // block 1 alone, so it writes in place.
  ASSERT_EQ(plan.copies.size(), 1u);
  EXPECT_EQ(plan.copies[0].from, shared);
  EXPECT_EQ(plan.copies[0].to, p->blocks[1]);
  EXPECT_NE(p->blocks[1], shared);
  EXPECT_EQ(c->blocks[1], shared);
  EXPECT_EQ(p->blocks[0], c->blocks[0]) << "the full first block stays shared";
}

TEST(Scheduler, ReusesACachedPrefix) {
  BlockManager blocks(16, kBlock, true);
  Scheduler scheduler(blocks, {.max_num_seqs = 8, .max_batched_tokens = 512});
  Sequence* a = add(scheduler, 40);
  run(scheduler, scheduler.schedule());
  scheduler.finish(a);
  Sequence* b = add(scheduler, 40);
  const StepPlan plan = scheduler.schedule();
  ASSERT_EQ(plan.slices.size(), 1u);
  EXPECT_EQ(b->cached_prompt_tokens, 32);  // two full blocks; the last 8 tokens run
  EXPECT_EQ(plan.slices[0].count, 8);
}

}  // namespace
}  // namespace nanoserve
