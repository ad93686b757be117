// Tensor parallelism on CPU ranks (threads joined by host-memory collectives):
// every architecture fixture split two ways must still match Hugging Face, as
// the whole model does, and the engine's greedy tokens must not change. The
// CUDA ranks (NCCL) are tested in backend/cuda_backend_test.cpp.
#include "parallel/tensor_parallel.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <numeric>
#include <thread>

#include "backend/cpu/ops.h"
#include "backend/cpu/reduced_dot.h"
#include "engine/engine.h"
#include "engine/sampler.h"
#include "parallel/shard.h"
#include "test_support.h"
#include "tokenizer/tokenizer.h"
#include "util/error.h"

namespace nanoserve {
namespace {

std::vector<float> row_of(const TensorView& t, int64_t row) {
  std::vector<float> out(static_cast<size_t>(t.shape[1]));
  cpu::load_row(t, row, out.data());
  return out;
}

using test::error_of;

// One sequence in caches of its own: blocks 0, 1, 2, ...
struct Sequence {
  std::vector<KvCache> caches;
  std::vector<int32_t> blocks;
  int64_t length = 0;

  Sequence(const TensorParallel& ranks, int64_t capacity)
      : caches(ranks.make_caches((capacity + 15) / 16, 16, KvDType::F32)) {
    blocks.resize(static_cast<size_t>((capacity + 15) / 16));
    std::iota(blocks.begin(), blocks.end(), 0);
  }
  std::vector<float> forward(const TensorParallel& ranks, std::span<const int32_t> tokens, LogitsFor which) {
    const SequenceSlice slice{tokens, length, blocks, which};
    auto logits = ranks.forward(std::span(&slice, 1), caches);
    length += static_cast<int64_t>(tokens.size());
    return logits;
  }
};

class SplitFixture : public ::testing::TestWithParam<test::ModelCase> {
 protected:
  void SetUp() override {
    model_ = std::make_unique<Model>(load_model(GetParam().model_path));
    ref_ = test::read_reference(GetParam().reference);
    const std::string why = error_of([&] { check_splits(*model_, 2); });
    if (!why.empty()) GTEST_SKIP() << why;
  }
  // The tolerances of model/transformer_test.cpp: 4e-2 of the largest logit
  // where the products round activations to bf16, 1e-4 on the float32 path.
  float tolerance() const {
    float scale = 1;
    for (float v : ref_.floats.at("logits")) scale = std::max(scale, std::abs(v));
    return cpu::takes_reduced_dot(model_->weights.embed.dtype) ? 4e-2f * scale : 1e-4f;
  }

  std::unique_ptr<Model> model_;
  test::Reference ref_;
};

TEST_P(SplitFixture, TwoRanksMatchReferenceLogits) {
  const TensorParallel ranks(*model_, 2, "cpu", {});
  const auto input = ref_.ids("input_ids");
  Sequence seq(ranks, static_cast<int64_t>(input.size()));
  const auto logits = seq.forward(ranks, input, LogitsFor::AllTokens);
  const auto& expected = ref_.floats.at("logits");
  ASSERT_EQ(logits.size(), expected.size());
  const float diff = test::max_abs_diff(logits.data(), expected.data(), expected.size());
  EXPECT_LE(diff, tolerance()) << GetParam().name;
  // Against the whole model on one rank: only the order of the row-parallel
  // sums differs.
  const TensorParallel one(*model_, 1, "cpu", {});
  Sequence whole(one, static_cast<int64_t>(input.size()));
  const auto single = whole.forward(one, input, LogitsFor::AllTokens);
  const float split_diff = test::max_abs_diff(logits.data(), single.data(), single.size());
  EXPECT_LE(split_diff, tolerance()) << GetParam().name;
  std::printf("  %-16s tp=2 logits: %.3g from the reference, %.3g from tp=1\n", GetParam().name.c_str(), diff,
              split_diff);
}

// Prefill, then one token at a time through every rank's KV cache, reproduces
// the reference's greedy continuation (steps closer than twice the tolerance
// are not called).
TEST_P(SplitFixture, TwoRanksGreedyContinuationMatchesReference) {
  const TensorParallel ranks(*model_, 2, "cpu", {});
  const auto prompt = ref_.ids("greedy_prompt");
  const auto expected = ref_.ints.at("greedy_tokens");
  const auto& margins = ref_.floats.at("greedy_margins");
  Sequence seq(ranks, static_cast<int64_t>(prompt.size() + expected.size()));
  auto logits = seq.forward(ranks, prompt, LogitsFor::LastToken);
  for (size_t step = 0; step < expected.size(); ++step) {
    if (margins[step] > 2 * tolerance()) {
      ASSERT_EQ(argmax(logits), expected[step]) << GetParam().name << " step " << step;
    }
    const int32_t token[1] = {static_cast<int32_t>(expected[step])};
    logits = seq.forward(ranks, token, LogitsFor::LastToken);
  }
}

INSTANTIATE_TEST_SUITE_P(Families, SplitFixture, ::testing::ValuesIn(test::model_cases()),
                         [](const auto& info) { return info.param.name; });

TEST(Shard, ColumnParallelTakesRowsAndRowParallelTakesColumns) {
  const Model model = load_model(test::fixture("llama32"));
  const Model rank1 = shard_model(model, 1, 2);
  const LayerWeights &full = model.weights.layers[0], &mine = rank1.weights.layers[0];
  EXPECT_EQ(rank1.config.heads, model.config.heads / 2);
  EXPECT_EQ(rank1.config.kv_heads, model.config.kv_heads / 2);
  EXPECT_EQ(rank1.config.intermediate_size, model.config.intermediate_size / 2);
  EXPECT_EQ(rank1.config.vocab_size, model.config.vocab_size);
  const int64_t q_rows = full.q.out_features() / 2, o_cols = full.o.in_features() / 2;
  EXPECT_EQ(mine.q.weight.shape, (Shape{q_rows, full.q.in_features()}));
  EXPECT_EQ(row_of(mine.q.weight, 0), row_of(full.q.weight, q_rows));
  EXPECT_EQ(mine.o.weight.shape, (Shape{full.o.out_features(), o_cols}));
  const auto whole_row = row_of(full.o.weight, 3);
  EXPECT_EQ(row_of(mine.o.weight, 3), std::vector<float>(whole_row.begin() + o_cols, whole_row.end()));
  const int64_t vocab_rows = model.config.vocab_size / 2;
  EXPECT_EQ(rank1.weights.embed.shape[0], vocab_rows);
  EXPECT_EQ(row_of(rank1.weights.embed, 0), row_of(model.weights.embed, vocab_rows));
}

// GPT-2 stores [in, out]: column-parallel c_attn/c_fc take columns,
// row-parallel c_proj takes rows, and only rank 0 keeps a row-parallel bias
// (the ranks' partial sums are added up).
TEST(Shard, InOutWeightsAndRowParallelBiases) {
  const Model model = load_model(test::fixture("gpt2"));
  const Model rank0 = shard_model(model, 0, 2), rank1 = shard_model(model, 1, 2);
  const LayerWeights &full = model.weights.layers[0], &mine = rank1.weights.layers[0];
  const int64_t up_cols = full.up.out_features() / 2, down_rows = full.down.in_features() / 2;
  const auto up_row = row_of(full.up.weight, 5);
  EXPECT_EQ(row_of(mine.up.weight, 5), std::vector<float>(up_row.begin() + up_cols, up_row.end()));
  EXPECT_EQ(row_of(mine.down.weight, 0), row_of(full.down.weight, down_rows));
  EXPECT_EQ(mine.up.bias.shape, (Shape{up_cols}));
  EXPECT_NE(rank0.weights.layers[0].down.bias.data, nullptr);
  EXPECT_EQ(mine.down.bias.data, nullptr);
  EXPECT_EQ(mine.o.bias.data, nullptr);
}

TEST(Shard, WhatDoesNotSplitIsRefusedByName) {
  const Model demo = load_model(test::demo_model_dir());
  EXPECT_EQ(error_of([&] { check_splits(demo, 4); }),
            "--tensor-parallel-size 4: num_key_value_heads=2 does not divide "
            "by 4 (each rank holds whole KV heads)");
  EXPECT_EQ(error_of([&] { check_splits(demo, 3); }),
            "--tensor-parallel-size 3: num_attention_heads=4 does not divide "
            "by 3 (each rank holds whole attention "
            "heads)");
  EXPECT_EQ(error_of([&] { check_splits(demo, 0); }), "--tensor-parallel-size 0: expected at least 1");
  const Model olmoe = load_model(test::fixture("olmoe"));
  EXPECT_NE(error_of([&] { check_splits(olmoe, 2); }).find("mixture of experts"), std::string::npos);
  Model wide_mlp = load_model(test::fixture("tinyllama"));  // intermediate_size 160
  EXPECT_EQ(error_of([&] { check_splits(wide_mlp, 2); }), "");
  wide_mlp.config.intermediate_size = 161;
  EXPECT_NE(error_of([&] { check_splits(wide_mlp, 2); }).find("intermediate_size=161"), std::string::npos);
}

// Many requests at once, several sharing a prompt prefix (prefix caching copies
// blocks on every rank): the same greedy tokens on two ranks as on one.
TEST(TensorParallelEngine, GreedyTokensOnTwoRanksEqualOneRank) {
  const Model model = load_model(test::demo_model_dir());
  const Tokenizer tokenizer = Tokenizer::from_file(test::demo_model_dir());
  const std::vector<std::string> prompts = {"And the LORD said unto Moses,", "And the LORD said unto Aaron,",
                                            "In the beginning God created",  "Blessed are the meek: for",
                                            "A fool and his money",          "The meek shall inherit",
                                            "Never put off until tomorrow",  "And it came to pass, when the"};
  const auto run = [&](int tp) {
    const TensorParallel ranks(model, tp, "cpu", {});
    EngineOptions options;
    options.kv_cache_bytes = 8 << 20;
    Engine engine(ranks, nullptr, options);
    std::vector<std::vector<int32_t>> out(prompts.size());
    for (size_t i = 0; i < prompts.size(); ++i) {
      SamplingParams p;
      p.temperature = 0;
      p.max_tokens = 24;
      p.ignore_eos = true;
      engine.submit({tokenizer.encode(prompts[i]), p},
                    [&out, i](const Event& e) { out[i].insert(out[i].end(), e.tokens.begin(), e.tokens.end()); });
    }
    engine.run_until_idle();
    return out;
  };
  const auto one = run(1), two = run(2);
  for (size_t i = 0; i < one.size(); ++i) {
    ASSERT_EQ(one[i].size(), 24u);
    EXPECT_EQ(two[i], one[i]) << prompts[i];
  }
}

// Embeddings pool the final norm's rows, which every rank holds whole: two ranks give one rank's
// vectors (to the rounding of the split products).
TEST(TensorParallelEngine, EmbeddingsOnTwoRanksEqualOneRank) {
  const Model model = load_model(test::demo_model_dir());
  const Tokenizer tokenizer = Tokenizer::from_file(test::demo_model_dir());
  const std::vector<std::string> texts = {"And the LORD said unto Moses,", "Blessed are the meek", "x"};
  const auto run = [&](int tp) {
    const TensorParallel ranks(model, tp, "cpu", {});
    Engine engine(ranks, nullptr, EngineOptions{});
    std::vector<std::vector<float>> out(texts.size());
    for (size_t i = 0; i < texts.size(); ++i) {
      engine.submit({tokenizer.encode(texts[i]), {}, Pooling{PoolingMode::Mean, true}},
                    [&out, i](const Event& e) { out[i] = e.embedding; });
    }
    engine.run_until_idle();
    return out;
  };
  const auto one = run(1), two = run(2);
  for (size_t i = 0; i < one.size(); ++i) {
    ASSERT_EQ(one[i].size(), 256u);
    double dot = 0;
    for (size_t j = 0; j < one[i].size(); ++j) dot += double(one[i][j]) * two[i][j];
    EXPECT_GT(dot, 0.99999) << texts[i];  // both unit vectors: the cosine
  }
}

TEST(HostCollective, EveryRankGetsTheSameSumAndTheGatherInRankOrder) {
  const Model model = load_model(test::demo_model_dir());
  std::vector<std::unique_ptr<Backend>> backends;
  std::vector<Backend*> pointers;
  for (int r = 0; r < 3; ++r) {
    backends.push_back(make_backend("cpu", model));
    pointers.push_back(backends.back().get());
  }
  auto collectives = make_collectives(pointers);
  ASSERT_EQ(collectives.size(), 3u);
  std::vector<std::vector<float>> sums(3), gathers(3);
  std::vector<std::thread> threads;
  for (int r = 0; r < 3; ++r) {
    threads.emplace_back([&, r] {
      std::vector<float> data = {0.1f * static_cast<float>(r + 1), 1e8f * static_cast<float>(r == 1), -1.0f};
      collectives[static_cast<size_t>(r)]->all_reduce_sum(data.data(), 3);
      sums[static_cast<size_t>(r)] = data;
      const float mine[2] = {static_cast<float>(r), static_cast<float>(10 * r)};
      gathers[static_cast<size_t>(r)].resize(6);
      collectives[static_cast<size_t>(r)]->all_gather(mine, 2, gathers[static_cast<size_t>(r)].data());
    });
  }
  for (auto& t : threads) t.join();
  const std::vector<float> expected = {(0.1f + 0.2f) + 0.3f, (0.0f + 1e8f) + 0.0f, -3.0f};
  for (int r = 0; r < 3; ++r) {
    EXPECT_EQ(sums[static_cast<size_t>(r)], expected) << "rank " << r;
    EXPECT_EQ(gathers[static_cast<size_t>(r)], (std::vector<float>{0, 0, 1, 10, 2, 20})) << "rank " << r;
  }
}

// A tensor-parallel shard keeps each weight's handle, with its own rank's view behind it.
TEST(Shard, KeepsEachWeightsHandle) {
  const Model m = load_model(test::fixture("tinyllama"));
  const Model shard = shard_model(m, 1, 2);
  const WeightSet set = weight_set(shard.weights);
  const Linear& down = shard.weights.layers[1].down;
  EXPECT_EQ(down.id, m.weights.layers[1].down.id);
  EXPECT_EQ(set.at(down).weight.shape, down.weight.shape);
  EXPECT_EQ(down.in_features() * 2, m.weights.layers[1].down.in_features());
}

}  // namespace
}  // namespace nanoserve
