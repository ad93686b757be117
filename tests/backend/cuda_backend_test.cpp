// The CUDA backend on the GPU: every architecture fixture against Hugging Face's reference, the
// demo model's greedy text against the CPU backend, and batching against requests run alone.
// Built with the CUDA backend; each test skips when no GPU is usable.
#include <cuda_runtime.h>
#include <gtest/gtest.h>

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <fstream>
#include <nlohmann/json.hpp>
#include <numeric>
#include <random>

#include "backend/backend.h"
#include "backend/cpu/ops.h"
#include "backend/cuda/kernels.h"
#include "backend/cuda_plugin.h"
#include "backend/device_array.h"
#include "engine/engine.h"
#include "engine/sampler.h"
#include "backend/kv_cache.h"
#include "model/transformer.h"
#include "test_support.h"
#include "tokenizer/tokenizer.h"
#include "util/error.h"

namespace nanoserve {
namespace {

#define SKIP_WITHOUT_GPU() \
  if (!gpu_usable()) GTEST_SKIP() << "no CUDA GPU here"

// The core reaches the plugin only by these names (backend.cpp, collective.cpp): a renamed entry
// point would fail at run time, on a GPU machine, so it is checked here where no GPU is needed.
TEST(CudaPlugin, ExportsItsEntryPoints) {
  EXPECT_NE(cuda_plugin_symbol("nanoserve_make_cuda_backend"), nullptr);
  EXPECT_NE(cuda_plugin_symbol("nanoserve_make_nccl_collectives"), nullptr);
  EXPECT_THROW(cuda_plugin_symbol("nanoserve_no_such_entry"), Error);
}

// Tolerance on logits, relative to the reference's largest |logit|. Float32 weights multiply in
// float32 (cuBLAS without TF32), differing from the CPU only in summation order and the GPU's
// expf/tanhf/rsqrtf (1-2 ulp): 2e-5, the CPU's own 1e-4 absolute on logits of ~5. Half-precision
// weights (bf16, f16, and GGUF blocks widened to bf16) multiply activations rounded to the same
// type, as every GPU engine does: bf16 keeps 8 bits of mantissa (relative rounding up to 2^-9 =
// 0.2% per value), which sums of hundreds of products and a few layers carry to about 1% of the
// logits' scale. Their prefill attention also runs in bf16 on the tensor cores (softmax weights and
// values rounded: flash_attention.cu), which on these tiny random models moves the worst fixture,
// gemma3 (an 8-key window), from 2.4% to 3.1%. 4% leaves room without hiding a wrong kernel
// (those miss by 10-100%).
float logits_tolerance(const Model& model) { return model.weights.embed.dtype == DType::F32 ? 2e-5f : 4e-2f; }

class CudaFixtureTest : public ::testing::TestWithParam<test::ModelCase> {
 protected:
  void SetUp() override {
    SKIP_WITHOUT_GPU();
    model_ = std::make_unique<Model>(load_model(GetParam().model_path));
    backend_ = make_backend("cuda", *model_);
    ref_ = test::read_reference(GetParam().reference);
  }
  float logit_scale() const {
    float scale = 1;
    for (float v : ref_.floats.at("logits")) scale = std::max(scale, std::abs(v));
    return scale;
  }

  std::unique_ptr<Model> model_;
  std::unique_ptr<Backend> backend_;
  test::Reference ref_;
};

// Both ways of multiplying: matvec and cuBLAS, and the batch-invariant tensor-core kernel.
TEST_P(CudaFixtureTest, LogitsMatchReference) {
  const auto input = ref_.ids("input_ids");
  const auto& expected = ref_.floats.at("logits");
  const float scale = logit_scale();
  const auto invariant = make_backend("cuda", *model_, {.batch_invariant = true});
  for (Backend* backend : {backend_.get(), invariant.get()}) {
    Transformer transformer(*model_, backend);
    SequenceCache cache = transformer.new_cache(static_cast<int64_t>(input.size()));
    const auto logits = transformer.forward(input, cache, LogitsFor::AllTokens);
    ASSERT_EQ(logits.size(), expected.size());
    const float diff = test::max_abs_diff(logits.data(), expected.data(), expected.size());
    EXPECT_LE(diff, logits_tolerance(*model_) * scale)
        << GetParam().name << " on " << backend->describe() << " (largest |logit| " << scale << ")";
    std::printf("  %-16s GPU logits%s: max abs diff %.3g, %.3g of the largest |logit| %.3g\n", GetParam().name.c_str(),
                backend == invariant.get() ? " (batch-invariant)" : "", diff, diff / scale, scale);
  }
}

// Greedy decoding with the cache on the GPU, one token at a time, picks the reference's tokens
// wherever the reference's top-2 margin exceeds twice the tolerance.
TEST_P(CudaFixtureTest, GreedyContinuationMatchesReference) {
  Transformer transformer(*model_, backend_.get());
  const auto prompt = ref_.ids("greedy_prompt");
  const auto expected = ref_.ints.at("greedy_tokens");
  const auto& margins = ref_.floats.at("greedy_margins");
  const float too_close = std::max(1e-3f, 2 * logits_tolerance(*model_) * logit_scale());
  SequenceCache cache = transformer.new_cache(static_cast<int64_t>(prompt.size() + expected.size()));
  auto logits = transformer.forward(prompt, cache, LogitsFor::LastToken);
  for (size_t step = 0; step < expected.size(); ++step) {
    if (margins[step] > too_close) {
      ASSERT_EQ(argmax(logits), expected[step]) << GetParam().name << " step " << step;
    }
    const int32_t token[1] = {static_cast<int32_t>(expected[step])};
    logits = transformer.forward(token, cache, LogitsFor::LastToken);
  }
}

// Decode steps are recorded as CUDA graphs and replayed (MoE routing copies to the host midway:
// those steps run launched). Replayed greedy steps run the kernels of launched ones, so they pick
// the argmax of the launched steps' logits, step after step; and replayed logits are theirs too.
TEST_P(CudaFixtureTest, ReplayedStepsGiveTheLogitsAndPicksOfLaunchedOnes) {
  const auto eager_backend = make_backend("cuda", *model_, {.cuda_graphs = false});
  const Transformer eager(*model_, eager_backend.get()), transformer(*model_, backend_.get());
  const auto prompt = ref_.ids("greedy_prompt");
  constexpr int64_t kSteps = 8;
  SequenceCache launched = eager.new_cache(static_cast<int64_t>(prompt.size()) + kSteps);
  SequenceCache replayed = transformer.new_cache(static_cast<int64_t>(prompt.size()) + kSteps);
  SequenceCache greedy = transformer.new_cache(static_cast<int64_t>(prompt.size()) + kSteps);
  auto greedy_step = [&](std::span<const int32_t> tokens) {
    const SequenceSlice slice{tokens, greedy.length(), greedy.blocks(), LogitsFor::LastToken};
    const auto picked = transformer.forward_greedy(std::span(&slice, 1), greedy.cache());
    greedy.advance(static_cast<int64_t>(tokens.size()));
    return picked.at(0);
  };
  auto logits = eager.forward(prompt, launched, LogitsFor::LastToken);
  transformer.forward(prompt, replayed, LogitsFor::LastToken);
  int32_t picked = greedy_step(prompt);
  for (int64_t step = 0; step < kSteps; ++step) {
    const int32_t expected = argmax(logits);
    ASSERT_EQ(picked, expected) << GetParam().name << " step " << step;
    const int32_t token[1] = {expected};
    logits = eager.forward(token, launched, LogitsFor::LastToken);
    ASSERT_EQ(transformer.forward(token, replayed, LogitsFor::LastToken), logits)
        << GetParam().name << " step " << step;
    picked = greedy_step(token);
  }
}

// Picks under a mask (a grammar's, computed on the host while the step runs) are the argmax of the
// launched step's logits among the allowed ids: the prompt step launched, later ones replayed. Each
// step allows a different third of the vocabulary, so an ignored or stale mask shows.
TEST_P(CudaFixtureTest, MaskedPicksAreTheArgmaxAmongTheAllowed) {
  const auto eager_backend = make_backend("cuda", *model_, {.cuda_graphs = false});
  const Transformer eager(*model_, eager_backend.get()), transformer(*model_, backend_.get());
  const auto prompt = ref_.ids("greedy_prompt");
  const int64_t vocab = model_->config.vocab_size;
  constexpr int64_t kSteps = 8;
  SequenceCache launched = eager.new_cache(static_cast<int64_t>(prompt.size()) + kSteps);
  SequenceCache masked = transformer.new_cache(static_cast<int64_t>(prompt.size()) + kSteps);
  std::vector<uint64_t> bits(static_cast<size_t>(allowed_words(vocab)));
  auto logits = eager.forward(prompt, launched, LogitsFor::LastToken);
  std::span<const int32_t> tokens = prompt;
  int32_t token = 0;
  for (int64_t step = 0; step < kSteps; ++step) {
    std::fill(bits.begin(), bits.end(), 0);
    int32_t expected = -1;
    for (int64_t t = 0; t < vocab; ++t) {
      if ((t * 7 + step) % 3) continue;
      bits[static_cast<size_t>(t >> 6)] |= uint64_t{1} << (t & 63);
      if (expected < 0 || logits[static_cast<size_t>(t)] > logits[static_cast<size_t>(expected)])
        expected = static_cast<int32_t>(t);
    }
    const SequenceSlice slice{tokens, masked.length(), masked.blocks(), LogitsFor::LastToken};
    const auto picked = transformer.forward_greedy(std::span(&slice, 1), masked.cache(),
                                                   [&] { return std::span<const uint64_t>(bits); });
    masked.advance(static_cast<int64_t>(tokens.size()));
    ASSERT_EQ(picked.at(0), expected) << GetParam().name << " step " << step;
    token = expected;
    tokens = std::span(&token, 1);
    logits = eager.forward(tokens, launched, LogitsFor::LastToken);
  }
}

INSTANTIATE_TEST_SUITE_P(Families, CudaFixtureTest, ::testing::ValuesIn(test::model_cases()),
                         [](const auto& info) { return info.param.name; });

// The demo model through the engine: greedy text of held-out prompts, alone and 64 at once.
class CudaEngineTest : public ::testing::Test {
 protected:
  void SetUp() override {
    SKIP_WITHOUT_GPU();
    model_ = std::make_unique<Model>(load_model(test::demo_model_dir()));
    backend_ = make_backend("cuda", *model_);
    const Tokenizer tokenizer = Tokenizer::from_file(test::demo_model_dir());
    std::ifstream in(test::demo_model_dir() + "/heldout.jsonl");
    std::string line;
    for (int i = 0; i < 64 && std::getline(in, line); ++i) {
      auto ids = tokenizer.encode(nlohmann::json::parse(line)["text"].get<std::string>());
      ids.resize(std::min<size_t>(ids.size(), 8 + static_cast<size_t>(i)));  // 8 to 71 tokens
      prompts_.push_back(ids);
    }
  }

  // Greedy continuations of `prompts` submitted together to one engine on `backend`, and with
  // `logprobs` >= 0 each token's logprobs into *logprobs.
  std::vector<std::vector<int32_t>> generate(Backend* backend, const std::vector<std::vector<int32_t>>& prompts,
                                             std::vector<std::vector<TokenLogprob>>* logprobs = nullptr) {
    const TensorParallel runner(*model_, backend);
    Engine engine(runner, nullptr, EngineOptions{});
    std::vector<std::vector<int32_t>> out(prompts.size());
    if (logprobs) logprobs->assign(prompts.size(), {});
    for (size_t i = 0; i < prompts.size(); ++i) {
      SamplingParams params;
      params.temperature = 0;
      params.max_tokens = 48;
      params.ignore_eos = true;
      params.logprobs = logprobs ? 2 : -1;
      engine.submit({prompts[i], params}, [&out, logprobs, i](const Event& e) {
        out[i].insert(out[i].end(), e.tokens.begin(), e.tokens.end());
        if (logprobs) (*logprobs)[i].insert((*logprobs)[i].end(), e.logprobs.begin(), e.logprobs.end());
      });
    }
    engine.run_until_idle();
    return out;
  }

  std::unique_ptr<Model> model_;
  std::unique_ptr<Backend> backend_;
  std::vector<std::vector<int32_t>> prompts_;
};

// The GPU's greedy text is the CPU's token for token, except from a step where the CPU's two most
// likely tokens were a near-tie: both backends keep the demo model's logits within about 0.04 of
// Hugging Face's float32 ones (LogitsMatchReference), so their picks may differ only where the top
// two are closer than twice that. From such a step the texts go separate ways and are not compared.
TEST_F(CudaEngineTest, GreedyTextEqualsTheCpuUpToNearTies) {
  constexpr float kNearTie = 0.1f;  // nats
  const std::vector<std::vector<int32_t>> prompts(prompts_.begin(), prompts_.begin() + 16);
  std::vector<std::vector<TokenLogprob>> cpu_logprobs;
  const auto cpu = generate(nullptr, prompts, &cpu_logprobs);
  const auto gpu = generate(backend_.get(), prompts);
  int identical = 0;
  for (size_t i = 0; i < prompts.size(); ++i) {
    ASSERT_EQ(gpu[i].size(), cpu[i].size());
    const size_t step =
        static_cast<size_t>(std::mismatch(gpu[i].begin(), gpu[i].end(), cpu[i].begin()).first - gpu[i].begin());
    if (step == gpu[i].size()) {
      ++identical;
      continue;
    }
    const auto& top = cpu_logprobs[i][step].top;  // the CPU's two most likely, most likely first
    ASSERT_EQ(top.size(), 2u);
    EXPECT_EQ(top[1].first, gpu[i][step])
        << "prompt " << i << " step " << step << ": the GPU picked a token outside the CPU's top two";
    EXPECT_LT(top[0].second - top[1].second, kNearTie)
        << "prompt " << i << " step " << step << ": the texts part where the CPU's top two are not a near-tie";
    std::printf("  prompt %zu: the texts part at step %zu, where the CPU's top two are %.4f nats apart\n", i, step,
                top[0].second - top[1].second);
  }
  std::printf("  %d of %zu greedy texts identical on the GPU and the CPU\n", identical, prompts.size());
}

// Decode steps replayed from CUDA graphs, alone and eight at a time, give the tokens of steps whose
// kernels are launched one by one.
TEST_F(CudaEngineTest, RecordedDecodeStepsGiveTheTokensOfLaunchedOnes) {
  const std::vector<std::vector<int32_t>> prompts(prompts_.begin(), prompts_.begin() + 8);
  const auto eager = make_backend("cuda", *model_, {.cuda_graphs = false});
  EXPECT_EQ(generate(backend_.get(), prompts), generate(eager.get(), prompts));
  EXPECT_EQ(generate(backend_.get(), {prompts[5]}), generate(eager.get(), {prompts[5]}));
}

// Batch-invariant, every row's products and attention run in an order fixed by the model alone
// (the tensor-core linear kernel; one attention arithmetic for every slice length), so a batch
// gives each request the bits, and so the tokens, of running it alone.
TEST_F(CudaEngineTest, SixtyFourConcurrentRequestsDecodeAsAlone) {
  ASSERT_EQ(prompts_.size(), 64u);
  const auto invariant = make_backend("cuda", *model_, {.batch_invariant = true});
  const auto together = generate(invariant.get(), prompts_);
  for (size_t i = 0; i < prompts_.size(); ++i) {
    EXPECT_EQ(together[i], generate(invariant.get(), {prompts_[i]})[0]) << "prompt " << i;
    EXPECT_EQ(together[i].size(), 48u);
  }
}

// Prefill attention on the tensor cores (flash_attention.cu) against the CPU's float32 attention on
// the same queries, keys and values: sequences of 200 and 130 tokens, then 100 more of the first
// over its 200 cached ones (whole and partial 64-key tiles, keys before the query tile), for
// grouped heads, a sliding window and a softcap. Scores are exact to about 2^-16 (q and k split in
// two bf16 parts); the softmax weights and the values are rounded to bf16 (2^-9 relative each), so
// the output, a weighted mean of values, is off by at most 2 * 2^-9 = 0.4% of the values' largest
// magnitude: 5e-3. A wrong mask or tile misses by tens of percent. The batch-invariant backend keeps
// the float32 kernels: 1e-5. Then a decoded token of each sequence (the float32 decode kernel). All
// of it with a float32 cache, a bf16 one and an fp8 one: every backend then reads the same rounded
// keys and values (the decode kernel its step's own key too, scaled as the CPU scales it), so the
// bounds stay.
TEST(CudaBackend, PrefillAttentionOnTensorCoresMatchesTheCpu) {
  SKIP_WITHOUT_GPU();
  struct Case {
    int64_t heads, kv_heads, head_dim, window;
    float softcap;
  };
  const Model model = load_model(test::demo_model_dir());
  const auto cpu = make_backend("cpu", model), gpu = make_backend("cuda", model);
  const auto invariant = make_backend("cuda", model, {.batch_invariant = true});
  std::mt19937 rng(5);
  std::normal_distribution<float> dist(0, 0.5f);
  constexpr int64_t kBlock = 16;
  std::vector<int32_t> table_a(19), table_b(9);  // 300 and 130 positions
  std::iota(table_a.begin(), table_a.end(), 0);
  std::iota(table_b.begin(), table_b.end(), 19);
  // Three steps: {first_pos, count} of each sequence (b not in the second); the last decodes a token
  // of each (the decode kernel, which stores the step's own keys itself).
  const std::vector<std::vector<std::pair<int64_t, int64_t>>> steps = {
      {{0, 200}, {0, 130}}, {{200, 100}}, {{300, 1}, {130, 1}}};
  for (const KvDType dtype : {KvDType::F32, KvDType::BF16, KvDType::FP8}) {
    for (const Case& c : {Case{8, 2, 64, 0, 0}, Case{4, 4, 128, 0, 0}, Case{4, 2, 32, 100, 0}, Case{6, 3, 96, 0, 30},
                          Case{4, 1, 16, 0, 0}, Case{4, 2, 16, 8, 0}}) {
      ModelConfig config = model.config;
      config.layers = 1;
      config.kv_heads = c.kv_heads;
      config.head_dim = c.head_dim;
      const AttentionParams params{c.heads,   c.kv_heads, c.head_dim, 1.0f / std::sqrt(static_cast<float>(c.head_dim)),
                                   c.softcap, c.window};
      std::vector<std::unique_ptr<KvCache>> caches;
      for (Backend* b : {cpu.get(), gpu.get(), invariant.get()})
        caches.push_back(std::make_unique<KvCache>(config.kv_shape(), 28, kBlock, dtype, *b));
      for (const auto& seqs : steps) {
        StepLayout layout;
        for (size_t i = 0; i < seqs.size(); ++i) {
          const auto [first_pos, count] = seqs[i];
          layout.sequences.push_back({layout.tokens, count, first_pos,
                                      i == 0 ? std::span<const int32_t>(table_a) : std::span<const int32_t>(table_b)});
          for (int64_t p = first_pos; p < first_pos + count; ++p) layout.positions.push_back(p);
          layout.tokens += count;
        }
        layout.token_ids.assign(static_cast<size_t>(layout.tokens), 0);
        const int64_t q_size = layout.tokens * c.heads * c.head_dim, kv_size = layout.tokens * c.kv_heads * c.head_dim;
        std::vector<float> q(static_cast<size_t>(q_size)), k(static_cast<size_t>(kv_size)),
            v(static_cast<size_t>(kv_size));
        for (auto* values : {&q, &k, &v}) {
          for (auto& x : *values) x = dist(rng);
        }
        float v_scale = 0;
        for (float x : v) v_scale = std::max(v_scale, std::abs(x));
        std::vector<std::vector<float>> outs;
        int which = 0;
        for (Backend* b : {cpu.get(), gpu.get(), invariant.get()}) {
          Buffer qb = b->floats(q_size), kb = b->floats(kv_size), vb = b->floats(kv_size), ob = b->floats(q_size);
          b->upload(q.data(), q.size() * sizeof(float), qb.data());
          b->upload(k.data(), k.size() * sizeof(float), kb.data());
          b->upload(v.data(), v.size() * sizeof(float), vb.data());
          const Step step = b->begin_step(layout, 0);
          b->attention(0, qb.floats(), kb.floats(), vb.floats(), params, *caches[static_cast<size_t>(which++)],
                       ob.floats());
          outs.emplace_back(static_cast<size_t>(q_size));
          b->download(ob.data(), outs.back().size() * sizeof(float), outs.back().data());
        }
        const float tensor_cores = test::max_abs_diff(outs[1].data(), outs[0].data(), outs[0].size());
        const float float32 = test::max_abs_diff(outs[2].data(), outs[0].data(), outs[0].size());
        const std::string what =
            fmt::format("{} cache, heads {} kv {} head_dim {} window {} softcap {}, step of {} tokens",
                        kv_dtype_name(dtype), c.heads, c.kv_heads, c.head_dim, c.window, c.softcap, layout.tokens);
        EXPECT_LE(tensor_cores, 5e-3f * v_scale) << what;
        EXPECT_LE(float32, 1e-5f * v_scale) << what;
        std::printf("  %s: tensor cores %.3g, float32 %.3g of the largest |v| %.3g\n", what.c_str(),
                    tensor_cores / v_scale, float32 / v_scale, v_scale);
      }
    }
  }
}

// The decode kernel gives each query head of a KV head's group a warp of one block, so its registers
// bound the group (decode_max_query_group, at most 32): the backend runs the largest group they
// allow and refuses the next one by name, instead of a launch that fails.
TEST(CudaBackend, AttentionRefusesAQueryGroupTheDecodeKernelCannotHold) {
  SKIP_WITHOUT_GPU();
  const Model model = load_model(test::demo_model_dir());
  const auto gpu = make_backend("cuda", model);
  constexpr int64_t kHeadDim = 256;
  const int64_t most = cuda::decode_max_query_group(kHeadDim, cuda::CacheType::BF16);
  ASSERT_GE(most, 1);
  ASSERT_LE(most, cuda::kMaxQueryGroup);
  ModelConfig config = model.config;
  config.layers = 1;
  config.kv_heads = 1;
  config.head_dim = kHeadDim;
  KvCache cache(config.kv_shape(), 1, 16, KvDType::BF16, *gpu);
  const std::vector<int32_t> table = {0};
  for (const int64_t group : {most, most + 1}) {
    StepLayout layout;
    layout.sequences.push_back({0, 1, 0, table});  // one token at position 0: the decode kernel's
    layout.positions = {0};
    layout.token_ids = {0};
    layout.tokens = 1;
    const std::vector<float> q(static_cast<size_t>(group * kHeadDim), 0.5f), kv(kHeadDim, 0.25f);
    Buffer qb = gpu->floats(group * kHeadDim), kb = gpu->floats(kHeadDim), vb = gpu->floats(kHeadDim),
           ob = gpu->floats(group * kHeadDim);
    gpu->upload(q.data(), q.size() * sizeof(float), qb.data());
    gpu->upload(kv.data(), kv.size() * sizeof(float), kb.data());
    gpu->upload(kv.data(), kv.size() * sizeof(float), vb.data());
    const AttentionParams params{group, 1, kHeadDim, 0.0625f, 0.0f, 0};
    const Step step = gpu->begin_step(layout, 0);
    const std::string error =
        test::error_of([&] { gpu->attention(0, qb.floats(), kb.floats(), vb.floats(), params, cache, ob.floats()); });
    if (group == most) {
      EXPECT_EQ(error, "") << "group " << group;
      std::vector<float> out(q.size());
      gpu->download(ob.data(), out.size() * sizeof(float), out.data());
      for (const float x : out) ASSERT_EQ(x, 0.25f) << "group " << group;  // one key: its value
    } else {
      EXPECT_EQ(error, fmt::format("the cuda backend's attention handles up to {} query heads per KV head at head_dim "
                                   "256 with a bf16 cache, not {}",
                                   most, group));
    }
  }
}

TEST(CudaBackend, RefusesAQuantizedKvCache) {
  SKIP_WITHOUT_GPU();
  const Model model = load_model(test::demo_model_dir());
  auto backend = make_backend("cuda", model);
  Transformer transformer(model, backend.get());
  SequenceCache cache = transformer.new_cache(16, KvDType::Q8_0);
  const int32_t token[1] = {1};
  try {
    transformer.forward(token, cache, LogitsFor::LastToken);
    FAIL() << "a q8_0 cache ran on the GPU";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("q8_0 is CPU-only"), std::string::npos) << e.what();
  }
}

// A replay key promises a step without host copies (Backend::begin_step): one that copies anyway is
// the caller's bug, refused with a message, and the backend works on. Without a key it runs. (The
// backend records steps once an attention has shown it the model's KV heads, which size the
// recorded attention's counters: a forward pass comes first.)
TEST(CudaStep, AHostCopyInsideARecordedStepIsRefused) {
  SKIP_WITHOUT_GPU();
  const Model model = load_model(test::fixture("tinyllama"));
  const auto backend = make_backend("cuda", model);
  {
    Transformer transformer(model, backend.get());
    SequenceCache cache = transformer.new_cache(16);
    const int32_t token[1] = {3};
    transformer.forward(token, cache, LogitsFor::LastToken);
  }
  const std::vector<int32_t> blocks = {0};
  StepLayout layout;
  layout.tokens = 1;
  layout.token_ids = {3};
  layout.positions = {0};
  layout.sequences = {{0, 1, 0, blocks}};
  const int64_t hidden = model.config.hidden_size;
  std::vector<float> copied(static_cast<size_t>(hidden)), out(copied.size()), row(copied.size());
  const auto work = [&](const Backend::LogitsUser& use) {
    const Buffer x = backend->floats(hidden);  // [1, hidden]
    backend->embed(Backend::Ids::Tokens, x.floats());
    backend->download(x.data(), copied.size() * sizeof(float), copied.data());
    use(x.floats());
  };
  {
    const Step step = backend->begin_step(layout, 42);
    EXPECT_EQ(test::error_of([&] { step.run(work, 1, hidden, {.logits = out.data()}); }),
              "a copy from the GPU while recording a decode step: a step with host copies needs replay key 0");
  }
  const Step step = backend->begin_step(layout, 0);
  step.run(work, 1, hidden, {.logits = out.data()});
  cpu::load_row(model.weights.embed, 3, row.data());
  EXPECT_EQ(out, row);
  EXPECT_EQ(copied, row);
}

}  // namespace
}  // namespace nanoserve
