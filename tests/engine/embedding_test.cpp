// Embedding requests through the engine on the demo model: prefill only, pooled from the final
// norm's rows, checked against the transformer's own final_norm activations pooled here, in chunks
// and beside generations in the same steps. (Values against Hugging Face: embedding_reference_test.cpp.)
#include <gtest/gtest.h>

#include <cmath>
#include <map>

#include "engine/engine.h"
#include "model/transformer.h"
#include "test_support.h"
#include "util/error.h"

namespace nanoserve {
namespace {

class EmbeddingTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    model_ = new Model(load_model(test::demo_model_dir()));
    runner_ = new TensorParallel(*model_);
    tokenizer_ = new Tokenizer(Tokenizer::from_file(test::demo_model_dir()));
  }
  static void TearDownTestSuite() {
    delete runner_;
    delete model_;
    delete tokenizer_;
  }

  static EngineOptions options(int64_t max_batched_tokens = 512) {
    EngineOptions o;
    o.kv_cache_bytes = 256 * KvCache::bytes_per_block(model_->config.kv_shape(), 16);
    o.limits.max_batched_tokens = max_batched_tokens;
    return o;
  }

  // The prompt's final_norm rows from one plain forward pass, pooled and normalized here.
  static std::vector<double> expected(const std::vector<int32_t>& ids, PoolingMode mode) {
    const Transformer transformer(*model_);
    auto cache = transformer.new_cache(static_cast<int64_t>(ids.size()));
    std::vector<float> rows;
    const ActivationSink sink = [&](const std::string& name, const float* data, int64_t n, int64_t cols) {
      if (name == "final_norm") rows.assign(data, data + n * cols);
    };
    transformer.forward(ids, cache, LogitsFor::AllTokens, &sink);
    return test::pooled(rows, model_->config.hidden_size, mode);
  }

  struct Result {
    std::vector<float> embedding;
    std::vector<int32_t> tokens;
    std::optional<FinishReason> finish;
    int64_t prompt_tokens = 0, completion_tokens = 0;
  };

  static std::map<uint64_t, Result> run(Engine& engine, const std::vector<Request>& requests,
                                        std::vector<uint64_t>& ids) {
    std::map<uint64_t, Result> results;
    for (const auto& r : requests) {
      ids.push_back(engine.submit(r, [&results](const Event& e) {
        Result& out = results[e.request_id];
        out.tokens.insert(out.tokens.end(), e.tokens.begin(), e.tokens.end());
        if (!e.finish) return;
        out.finish = e.finish;
        out.embedding = e.embedding;
        out.prompt_tokens = e.prompt_tokens;
        out.completion_tokens = e.completion_tokens;
      }));
    }
    engine.run_until_idle();
    return results;
  }

  static void expect_close(const std::vector<float>& got, const std::vector<double>& want, const std::string& what) {
    ASSERT_EQ(got.size(), want.size()) << what;
    for (size_t i = 0; i < got.size(); ++i) EXPECT_NEAR(got[i], want[i], 1e-5) << what << " [" << i << "]";
  }

  static Model* model_;
  static TensorParallel* runner_;  // the demo model on a CPU backend, shared by the engines here
  static Tokenizer* tokenizer_;
};
Model* EmbeddingTest::model_ = nullptr;
TensorParallel* EmbeddingTest::runner_ = nullptr;
Tokenizer* EmbeddingTest::tokenizer_ = nullptr;

TEST_F(EmbeddingTest, EachPoolingOfPromptsPrefilledInChunksIsThePooledFinalNorm) {
  const std::vector<std::string> texts = {"And the LORD said unto Moses,",
                                          "A fortune: you will be hungry again in one hour.",
                                          std::string(300, 'x') + " and the rest of a long prompt"};
  for (PoolingMode mode : {PoolingMode::Last, PoolingMode::Mean, PoolingMode::Cls}) {
    Engine engine(*runner_, tokenizer_, options(/*max_batched_tokens=*/16));  // the long prompt takes many steps
    std::vector<Request> requests;
    for (const auto& text : texts) requests.push_back({tokenizer_->encode(text), {}, Pooling{mode, true}});
    std::vector<uint64_t> ids;
    const auto results = run(engine, requests, ids);
    for (size_t i = 0; i < texts.size(); ++i) {
      const Result& r = results.at(ids[i]);
      const std::string what = std::string(pooling_mode_name(mode)) + " of text " + std::to_string(i);
      EXPECT_EQ(r.finish, FinishReason::Stop) << what;
      EXPECT_TRUE(r.tokens.empty()) << what;
      EXPECT_EQ(r.completion_tokens, 0) << what;
      EXPECT_EQ(r.prompt_tokens, static_cast<int64_t>(requests[i].prompt.size())) << what;
      expect_close(r.embedding, expected(requests[i].prompt, mode), what);
    }
    EXPECT_GT(requests[2].prompt.size(), 16u * 4);
    EXPECT_EQ(engine.stats().used_blocks, 0) << "no KV kept";
  }
}

TEST_F(EmbeddingTest, EmbeddingsAndGenerationsShareStepsWithoutChangingEither) {
  SamplingParams greedy;
  greedy.temperature = 0;
  greedy.max_tokens = 12;
  greedy.ignore_eos = true;
  const std::vector<int32_t> prompt = tokenizer_->encode("And God said, Let there be light");
  std::vector<int32_t> alone_tokens;
  {
    Engine engine(*runner_, tokenizer_, options());
    std::vector<uint64_t> ids;
    alone_tokens = run(engine, {{prompt, greedy}}, ids).at(ids[0]).tokens;
  }
  Engine engine(*runner_, tokenizer_, options(24));
  const std::vector<int32_t> a = tokenizer_->encode("In the beginning"),
                             b = tokenizer_->encode("Thou shalt not steal, nor lie.");
  std::vector<uint64_t> ids;
  const auto results =
      run(engine, {{prompt, greedy}, {a, {}, Pooling{}}, {b, {}, Pooling{PoolingMode::Mean, true}}}, ids);
  EXPECT_EQ(results.at(ids[0]).tokens, alone_tokens);
  expect_close(results.at(ids[1]).embedding, expected(a, PoolingMode::Last), "last");
  expect_close(results.at(ids[2]).embedding, expected(b, PoolingMode::Mean), "mean");
}

TEST_F(EmbeddingTest, AnInputLongerThanTheContextIsRefusedNamingBoth) {
  EngineOptions o = options();
  o.max_model_len = 32;
  Engine engine(*runner_, tokenizer_, o);
  try {
    engine.submit({std::vector<int32_t>(40, 5), {}, Pooling{}}, [](const Event&) {});
    FAIL() << "accepted";
  } catch (const Error& e) {
    EXPECT_STREQ(e.what(), "the input is 40 tokens, more than the context of 32");
  }
}

}  // namespace
}  // namespace nanoserve
