// Tensor parallelism on CUDA ranks: NCCL collectives, the backend operations
// the split pass adds, and the whole split model against the model alone. On a
// machine with one GPU the two-rank test checks that a second rank is refused
// by name; with two or more it runs the split.
#include <cuda_runtime.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <numeric>

#include "backend/backend.h"
#include "backend/cpu/ops.h"
#include "backend/device_array.h"
#include "engine/sampler.h"
#include "model/transformer.h"
#include "parallel/collective.h"
#include "parallel/tensor_parallel.h"
#include "test_support.h"
#include "util/error.h"

namespace nanoserve {
namespace {

#define SKIP_WITHOUT_GPU() \
  if (!gpu_usable()) GTEST_SKIP() << "no CUDA GPU here"

int gpu_count() {
  int devices = 0;
  return cudaGetDeviceCount(&devices) == cudaSuccess ? devices : 0;
}

std::vector<float> download(Backend& backend, const Buffer& buffer) {
  std::vector<float> host(buffer.bytes() / sizeof(float));
  backend.download(buffer.data(), buffer.bytes(), host.data());
  return host;
}

Buffer upload(Backend& backend, const std::vector<float>& host) {
  Buffer b = backend.floats(static_cast<int64_t>(host.size()));
  backend.upload(host.data(), host.size() * sizeof(float), b.data());
  return b;
}

// The demo model's reference prompt, all its logits: through `ranks`, or
// through one Transformer.
std::vector<float> prompt_logits(const TensorParallel& ranks, const std::vector<int32_t>& input) {
  auto caches = ranks.make_caches(static_cast<int64_t>(input.size() + 15) / 16, 16, KvDType::F32);
  std::vector<int32_t> blocks(caches[0].num_blocks());
  std::iota(blocks.begin(), blocks.end(), 0);
  const SequenceSlice slice{input, 0, blocks, LogitsFor::AllTokens};
  return ranks.forward(std::span(&slice, 1), caches);
}

class CudaTensorParallel : public ::testing::Test {
 protected:
  void SetUp() override {
    SKIP_WITHOUT_GPU();
    model_ = std::make_unique<Model>(load_model(test::demo_model_dir()));
    const auto ref = test::read_reference(test::fixture("demo/reference.safetensors"));
    input_ = ref.ids("input_ids");
    reference_ = ref.floats.at("logits");
  }
  std::unique_ptr<Model> model_;
  std::vector<int32_t> input_;
  std::vector<float> reference_;
};

// One rank through NCCL: an all-reduce leaves the data, an all-gather copies
// it, queued on the backend's stream.
TEST_F(CudaTensorParallel, NcclCollectivesOnOneGpu) {
  auto backend = make_backend("cuda", *model_);
  auto collectives = make_collectives({backend.get()});
  ASSERT_EQ(collectives.size(), 1u);
  const std::vector<float> values = {1.5f, -2.0f, 3.25f, 1e-30f};
  Buffer data = upload(*backend, values);
  collectives[0]->all_reduce_sum(data.floats(), 4);
  EXPECT_EQ(download(*backend, data), values);
  Buffer all = backend->floats(4);
  collectives[0]->all_gather(data.floats(), 4, all.floats());
  EXPECT_EQ(download(*backend, all), values);
}

// The split pass's two backend additions: a strided block copy (joining the
// ranks' logits) and a zero row for embedding id -1 (a token another rank's
// vocabulary share holds).
TEST_F(CudaTensorParallel, StridedCopyAndZeroEmbeddingRows) {
  auto backend = make_backend("cuda", *model_);
  std::vector<float> source(24);
  std::iota(source.begin(), source.end(), 0.0f);                                                 // [4, 6]
  Buffer src = upload(*backend, source), dst = upload(*backend, std::vector<float>(15, -1.0f));  // [3, 5]
  backend->copy_strided(src.floats() + 7, 6, dst.floats() + 1, 5, 3,
                        2);  // rows 1..3, columns 1..2
  EXPECT_EQ(download(*backend, dst), (std::vector<float>{-1, 7, 8, -1, -1, -1, 13, 14, -1, -1, -1, 19, 20, -1, -1}));

  StepLayout step;
  step.tokens = 3;
  step.token_ids = {5, -1, 2};
  step.positions = {0, 1, 2};
  const std::vector<int32_t> blocks = {0};
  step.sequences = {{0, 3, 0, blocks}};
  const Step started = backend->begin_step(step, 0);
  const int64_t hidden = model_->config.hidden_size;
  Buffer out = backend->floats(3 * hidden);
  backend->embed(Backend::Ids::Tokens, out.floats());
  const auto got = download(*backend, out);
  std::vector<float> row(static_cast<size_t>(hidden));
  cpu::load_row(model_->weights.embed, 5, row.data());
  EXPECT_TRUE(std::equal(row.begin(), row.end(), got.begin()));
  EXPECT_TRUE(std::all_of(got.begin() + hidden, got.begin() + 2 * hidden, [](float v) { return v == 0.0f; }));
  cpu::load_row(model_->weights.embed, 2, row.data());
  EXPECT_TRUE(std::equal(row.begin(), row.end(), got.begin() + 2 * hidden));
}

// --tensor-parallel-size 1 runs the split path with one shard: the same bits as
// the backend alone.
TEST_F(CudaTensorParallel, OneRankGivesTheBitsOfTheBackendAlone) {
  const TensorParallel one(*model_, 1, "cuda", {});
  auto backend = make_backend("cuda", *model_);
  const TensorParallel alone(*model_, backend.get());
  EXPECT_EQ(prompt_logits(one, input_), prompt_logits(alone, input_));
}

// Two ranks on GPUs 0 and 1 joined by NCCL: logits within the bf16 tolerance of
// the GPU tests (4e-2 of the largest) of the reference and of one rank. With
// one GPU, the second rank is refused.
TEST_F(CudaTensorParallel, TwoRanksMatchOneOrAreRefusedWithoutASecondGpu) {
  if (gpu_count() < 2) {
    try {
      TensorParallel two(*model_, 2, "cuda", {});
      FAIL() << "two ranks started on one GPU";
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find("GPU 1 was asked for"), std::string::npos) << e.what();
    }
    return;
  }
  const TensorParallel two(*model_, 2, "cuda", {}), one(*model_, 1, "cuda", {});
  const auto split = prompt_logits(two, input_), whole = prompt_logits(one, input_);
  float scale = 1;
  for (float v : reference_) scale = std::max(scale, std::abs(v));
  EXPECT_LE(test::max_abs_diff(split.data(), reference_.data(), reference_.size()), 4e-2f * scale);
  EXPECT_LE(test::max_abs_diff(split.data(), whole.data(), whole.size()), 4e-2f * scale);
}

}  // namespace
}  // namespace nanoserve
