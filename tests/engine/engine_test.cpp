// The engine on the demo model: batching, preemption, prefix caching, n > 1, cancellation and
// sampling controls, each checked against a plain run or a straightforward reference.
#include "engine/engine.h"

#include <gtest/gtest.h>

#include <condition_variable>
#include <cstring>
#include <fstream>
#include <set>
#include <map>
#include <nlohmann/json.hpp>
#include <regex>

#include "formats/safetensors.h"
#include "grammar/gbnf.h"
#include "test_support.h"
#include "util/error.h"

namespace nanoserve {
namespace {

struct Outcome {
  std::vector<int32_t> tokens;
  std::string text;
  std::vector<std::string> deltas;
  std::vector<TokenLogprob> logprobs;
  FinishReason finish = FinishReason::Error;
  int64_t cached_prompt_tokens = 0, completion_tokens = 0;
  int finals = 0;
};

class EngineTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    model_ = new Model(load_model(test::demo_model_dir()));
    runner_ = new TensorParallel(*model_);
    tokenizer_ = new Tokenizer(Tokenizer::from_file(test::demo_model_dir()));
    std::ifstream in(test::demo_model_dir() + "/heldout.jsonl");
    std::string line;
    while (std::getline(in, line))
      docs_.push_back(tokenizer_->encode(nlohmann::json::parse(line)["text"].get<std::string>()));
  }
  static void TearDownTestSuite() {
    delete runner_;
    delete model_;
    delete tokenizer_;
  }

  static EngineOptions options(int64_t blocks = 512, bool prefix_caching = true) {
    EngineOptions o;
    o.kv_cache_bytes = blocks * KvCache::bytes_per_block(model_->config.kv_shape(), 16);
    o.prefix_caching = prefix_caching;
    return o;
  }

  // A prompt of `length` tokens from the held-out documents (BOS first).
  static std::vector<int32_t> prompt(size_t doc, size_t length) {
    std::vector<int32_t> ids;
    for (size_t d = doc; ids.size() < length; ++d) {
      const auto& more = docs_[d % docs_.size()];
      ids.insert(ids.end(), more.begin(), more.end());
    }
    ids.resize(length);
    return ids;
  }

  static SamplingParams greedy(int32_t max_tokens) {
    SamplingParams p;
    p.temperature = 0;
    p.max_tokens = max_tokens;
    p.ignore_eos = true;
    return p;
  }

  // Submits every request, runs to completion, returns outcomes by (request, sample).
  static std::map<std::pair<uint64_t, int>, Outcome> run(Engine& engine, const std::vector<Request>& requests,
                                                         std::vector<uint64_t>* ids = nullptr) {
    std::map<std::pair<uint64_t, int>, Outcome> out;
    for (const auto& r : requests) {
      const uint64_t id = engine.submit(r, [&out](const Event& e) {
        Outcome& o = out[{e.request_id, e.index}];
        o.tokens.insert(o.tokens.end(), e.tokens.begin(), e.tokens.end());
        o.text += e.text;
        o.deltas.push_back(e.text);
        o.logprobs.insert(o.logprobs.end(), e.logprobs.begin(), e.logprobs.end());
        if (e.finish) {
          o.finish = *e.finish;
          o.cached_prompt_tokens = e.cached_prompt_tokens;
          o.completion_tokens = e.completion_tokens;
          ++o.finals;
        }
      });
      if (ids) ids->push_back(id);
    }
    engine.run_until_idle();
    return out;
  }

  static Outcome run_alone(const Request& r, const EngineOptions& o = options()) {
    Engine engine(*runner_, tokenizer_, o);
    auto out = run(engine, {r});
    EXPECT_EQ(engine.stats().used_blocks, 0);
    return out.begin()->second;
  }

  static Model* model_;
  static TensorParallel* runner_;  // the demo model on a CPU backend, which every engine here shares
  static Tokenizer* tokenizer_;
  static std::vector<std::vector<int32_t>> docs_;
};
Model* EngineTest::model_ = nullptr;
TensorParallel* EngineTest::runner_ = nullptr;
Tokenizer* EngineTest::tokenizer_ = nullptr;
std::vector<std::vector<int32_t>> EngineTest::docs_;

TEST_F(EngineTest, SixteenConcurrentRequestsMatchEachRunAlone) {
  std::vector<Request> requests;
  for (size_t i = 0; i < 16; ++i) requests.push_back({prompt(i, 5 + 13 * i), greedy(static_cast<int32_t>(8 + 3 * i))});
  Engine engine(*runner_, tokenizer_, options());
  std::vector<uint64_t> ids;
  auto together = run(engine, requests, &ids);
  ASSERT_EQ(together.size(), 16u);
  for (size_t i = 0; i < requests.size(); ++i) {
    const Outcome& batched = together.at({ids[i], 0});
    const Outcome alone = run_alone(requests[i]);
    EXPECT_EQ(batched.tokens, alone.tokens) << "request " << i;
    EXPECT_EQ(batched.text, alone.text) << "request " << i;
    EXPECT_EQ(batched.finish, FinishReason::Length);
    EXPECT_EQ(batched.tokens.size(), 8 + 3 * i);
    EXPECT_EQ(batched.finals, 1);
  }
  EXPECT_EQ(engine.stats().used_blocks, 0) << "every block back in the pool";
}

// A pool of 12 blocks cannot hold 8 sequences of ~90 tokens at once: the newest are preempted and
// recomputed, and every output is still the one it has alone.
TEST_F(EngineTest, PreemptionUnderATinyPoolKeepsOutputs) {
  std::vector<Request> requests;
  for (size_t i = 0; i < 8; ++i) requests.push_back({prompt(3 * i, 40 + 7 * i), greedy(40)});
  Engine engine(*runner_, tokenizer_, options(12));
  std::vector<uint64_t> ids;
  auto together = run(engine, requests, &ids);
  EXPECT_GT(engine.stats().preemptions, 0);
  for (size_t i = 0; i < requests.size(); ++i) {
    EXPECT_EQ(together.at({ids[i], 0}).tokens, run_alone(requests[i]).tokens) << "request " << i;
  }
  EXPECT_EQ(engine.stats().used_blocks, 0);
}

// Requests sharing a long prefix reuse its blocks, with outputs identical to running without the cache.
TEST_F(EngineTest, PrefixCacheChangesNothingButWork) {
  const auto shared = prompt(7, 64);
  std::vector<Request> requests;
  for (size_t i = 0; i < 6; ++i) {
    auto p = shared;
    const auto tail = prompt(20 + i, 5 + i);
    p.insert(p.end(), tail.begin(), tail.end());
    requests.push_back({p, greedy(12)});
  }
  std::map<std::pair<uint64_t, int>, Outcome> results[2];
  std::vector<uint64_t> ids[2];
  EngineStats stats[2];
  for (int cached = 0; cached < 2; ++cached) {
    Engine engine(*runner_, tokenizer_, options(512, cached == 1));
    // One request first, so that the others find its blocks published.
    auto first = run(engine, {requests[0]}, &ids[cached]);
    results[cached].insert(first.begin(), first.end());
    auto rest = run(engine, {requests.begin() + 1, requests.end()}, &ids[cached]);
    results[cached].insert(rest.begin(), rest.end());
    stats[cached] = engine.stats();
    EXPECT_EQ(stats[cached].used_blocks, 0);
  }
  for (size_t i = 0; i < requests.size(); ++i) {
    const Outcome& plain = results[0].at({ids[0][i], 0});
    const Outcome& cached = results[1].at({ids[1][i], 0});
    EXPECT_EQ(plain.tokens, cached.tokens) << i;
    EXPECT_EQ(plain.cached_prompt_tokens, 0);
    if (i > 0) {
      EXPECT_EQ(cached.cached_prompt_tokens, 64) << "4 full blocks of the shared prefix";
    }
  }
  EXPECT_EQ(stats[0].prefix_hits, 0);
  EXPECT_GE(stats[1].prefix_hits, 20);
  EXPECT_LT(stats[1].prompt_tokens_computed, stats[0].prompt_tokens_computed - 5 * 60);
}

// n samples share the prompt's blocks; sample i equals a single request seeded the same way only
// for i = 0, and all differ from each other at temperature 1.
TEST_F(EngineTest, SamplesShareThePromptBlocks) {
  SamplingParams p;
  p.temperature = 1.0f;
  p.seed = 5;
  p.max_tokens = 20;
  p.ignore_eos = true;
  p.n = 4;
  Engine engine(*runner_, tokenizer_, options());
  std::map<int, Outcome> samples;
  const auto prompt40 = prompt(11, 40);  // 2 full blocks and a partial one
  engine.submit({prompt40, p}, [&](const Event& e) {
    auto& o = samples[e.index];
    o.tokens.insert(o.tokens.end(), e.tokens.begin(), e.tokens.end());
  });
  ASSERT_TRUE(engine.step());  // prefill, fork, first token of each sample
  EXPECT_EQ(engine.stats().used_blocks, 3) << "the four samples share the prompt's three blocks";
  engine.run_until_idle();
  ASSERT_EQ(samples.size(), 4u);
  std::set<std::vector<int32_t>> distinct;
  for (auto& [i, o] : samples) {
    EXPECT_EQ(o.tokens.size(), 20u);
    distinct.insert(o.tokens);
  }
  EXPECT_EQ(distinct.size(), 4u);
  p.n = 1;
  EXPECT_EQ(run_alone({prompt40, p}).tokens, samples[0].tokens);
  EXPECT_EQ(engine.stats().used_blocks, 0);
}

// The same seed gives the same tokens whatever else runs in the batch.
TEST_F(EngineTest, SeedIsIndependentOfTheBatch) {
  SamplingParams p;
  p.temperature = 0.9f;
  p.top_p = 0.95f;
  p.seed = 1234;
  p.max_tokens = 24;
  p.ignore_eos = true;
  const Request r{prompt(2, 30), p};
  const Outcome alone = run_alone(r);
  std::vector<Request> crowd{r};
  for (size_t i = 0; i < 5; ++i) {
    SamplingParams other = p;
    other.seed = 99 + i;
    crowd.push_back({prompt(40 + i, 20 + 9 * i), other});
  }
  Engine engine(*runner_, tokenizer_, options());
  std::vector<uint64_t> ids;
  auto out = run(engine, crowd, &ids);
  EXPECT_EQ(out.at({ids[0], 0}).tokens, alone.tokens);
  EXPECT_EQ(engine.stats().used_blocks, 0);
  SamplingParams different = p;
  different.seed = 4321;
  EXPECT_NE(run_alone({r.prompt, different}).tokens, alone.tokens);
}

// Greedy with bias and penalties, and logprobs, against a reference that runs the model one full
// forward per step and applies the rules by hand.
TEST_F(EngineTest, PenaltiesBiasAndLogprobsMatchAReference) {
  SamplingParams p = greedy(16);
  p.repetition_penalty = 1.3f;
  p.presence_penalty = 0.4f;
  p.frequency_penalty = 0.3f;
  p.logit_bias = {{tokenizer_->encode(" the", false)[0], -2.0f}};
  p.logprobs = 5;
  const auto ids = prompt(5, 24);
  const Outcome got = run_alone({ids, p});

  Transformer transformer(*model_);
  std::vector<int32_t> seq = ids;
  std::map<int32_t, int> counts;
  for (size_t step = 0; step < 16; ++step) {
    auto cache = transformer.new_cache(static_cast<int64_t>(seq.size()));
    auto logits = transformer.forward(seq, cache, LogitsFor::LastToken);
    const TokenLogprob expected_lp = logprobs_of(logits, 0, 5);
    std::vector<float> l = logits;
    for (auto [t, b] : p.logit_bias) l[static_cast<size_t>(t)] += b;
    std::set<int32_t> seen(ids.begin(), ids.end());
    for (auto& [t, c] : counts) seen.insert(t);
    for (int32_t t : seen)
      l[static_cast<size_t>(t)] =
          l[static_cast<size_t>(t)] > 0 ? l[static_cast<size_t>(t)] / 1.3f : l[static_cast<size_t>(t)] * 1.3f;
    for (auto& [t, c] : counts) l[static_cast<size_t>(t)] -= 0.4f + 0.3f * static_cast<float>(c);
    const int32_t next = argmax(l);
    ASSERT_EQ(got.tokens.at(step), next) << "step " << step;
    const TokenLogprob& lp = got.logprobs.at(step);
    const float z = expected_lp.logprob - logits[0];  // log_softmax offset
    EXPECT_NEAR(lp.logprob, logits[static_cast<size_t>(next)] + z, 1e-4);
    ASSERT_EQ(lp.top.size(), 5u);
    for (size_t k = 0; k < 5; ++k) {
      EXPECT_EQ(lp.top[k].first, expected_lp.top[k].first);
      EXPECT_NEAR(lp.top[k].second, expected_lp.top[k].second, 1e-4);
    }
    seq.push_back(next);
    ++counts[next];
  }
}

// A stop string that spans a token boundary ends generation; it and everything after it never
// appear, and the text before it all does.
TEST_F(EngineTest, StopStringAcrossTokens) {
  const Request plain{prompt(9, 20), greedy(30)};
  const Outcome full = run_alone(plain);
  // Find two adjacent tokens whose joint text gives a stop string crossing their boundary.
  std::string prefix;
  size_t cut = std::string::npos;
  std::string stop;
  for (size_t i = 0; i + 1 < full.tokens.size() && cut == std::string::npos; ++i) {
    const std::string a = tokenizer_->decode({full.tokens[i]}), b = tokenizer_->decode({full.tokens[i + 1]});
    if (a.size() >= 2 && b.size() >= 2 && i > 2) {
      stop = a.substr(a.size() - 2) + b.substr(0, 2);
      cut = full.text.find(stop);
    }
    prefix += a;
  }
  ASSERT_NE(cut, std::string::npos);
  Request r = plain;
  r.params.stop = {stop};
  const Outcome got = run_alone(r);
  EXPECT_EQ(got.finish, FinishReason::Stop);
  EXPECT_EQ(got.text, full.text.substr(0, cut));
  std::string streamed;
  for (const auto& d : got.deltas) {
    streamed += d;
    EXPECT_EQ(streamed, full.text.substr(0, streamed.size())) << "a delta went past the text before the stop";
  }
}

TEST_F(EngineTest, EosAndStopTokenIdsEndGeneration) {
  SamplingParams p = greedy(30);
  const Outcome free_run = run_alone({prompt(1, 12), p});
  p.stop_token_ids = {free_run.tokens.at(5)};
  const Outcome stopped = run_alone({prompt(1, 12), p});
  EXPECT_EQ(stopped.finish, FinishReason::Stop);
  const auto first = std::find(free_run.tokens.begin(), free_run.tokens.end(), free_run.tokens[5]);
  EXPECT_EQ(stopped.tokens, std::vector<int32_t>(free_run.tokens.begin(), first)) << "the stop token is not output";
}

TEST_F(EngineTest, CancellationFreesEveryBlock) {
  Engine engine(*runner_, tokenizer_, options());
  std::vector<FinishReason> finals;
  int tokens = 0;
  const uint64_t id = engine.submit({prompt(0, 50), greedy(200)}, [&](const Event& e) {
    tokens += static_cast<int>(e.tokens.size());
    if (e.finish) finals.push_back(*e.finish);
  });
  for (int i = 0; i < 5; ++i) engine.step();
  EXPECT_GT(engine.stats().used_blocks, 0);
  engine.cancel(id);
  engine.step();
  ASSERT_EQ(finals.size(), 1u);
  EXPECT_EQ(finals[0], FinishReason::Cancelled);
  EXPECT_EQ(tokens, 5);
  EXPECT_EQ(engine.stats().used_blocks, 0);
  EXPECT_FALSE(engine.step());
}

TEST_F(EngineTest, OversizedRequestsAreRefusedAtSubmission) {
  Engine engine(*runner_, tokenizer_, options(8));
  try {
    engine.submit({prompt(0, 100), greedy(100)}, [](const Event&) {});
    FAIL();
  } catch (const Error& e) {
    EXPECT_STREQ(
        e.what(),
        "the prompt (100 tokens) plus max_tokens (100) needs 13 KV blocks of 16 tokens, but the pool holds only "
        "8 blocks (128 tokens); raise --kv-cache-memory or lower max_tokens");
  }
  try {
    engine.submit({prompt(0, 1000), greedy(100)}, [](const Event&) {});
    FAIL();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("more than the model's context of 1024"), std::string::npos) << e.what();
  }
  EXPECT_THROW(engine.submit({{}, greedy(4)}, [](const Event&) {}), Error);
  EXPECT_THROW(engine.submit({{1, 99999}, greedy(4)}, [](const Event&) {}), Error);
}

// The demo model with its vocabulary padded from 4096 to 4160 rows, as real checkpoints pad theirs
// to a multiple of 64: the padded rows are 20 times the row of `favourite`, so that their logits
// beat every real token's wherever that one's is positive. The tokenizer stays at 4096 tokens.
std::string write_padded_demo(const test::ScratchDir& dir, int32_t favourite) {
  const std::string src = test::demo_model_dir();
  for (const char* f : {"tokenizer.json", "tokenizer_config.json", "generation_config.json"}) {
    test::write_file(dir.file(f), test::read_file(src + "/" + f));
  }
  auto config = nlohmann::json::parse(test::read_file(src + "/config.json"));
  config["vocab_size"] = 4160;
  test::write_file(dir.file("config.json"), config.dump());
  const SafetensorsFile weights(src + "/model.safetensors");
  std::vector<TensorToWrite> tensors;
  std::vector<uint16_t> embedding;
  for (const auto& [name, t] : weights.tensors()) {
    if (name != "model.embed_tokens.weight") {
      tensors.push_back({name, t.dtype, t.shape, t.data});
      continue;
    }
    const int64_t hidden = t.shape[1];
    embedding.assign(reinterpret_cast<const uint16_t*>(t.data), reinterpret_cast<const uint16_t*>(t.data) + t.numel());
    for (int64_t row = 4096; row < 4160; ++row) {
      for (int64_t i = 0; i < hidden; ++i) {
        uint32_t bits = uint32_t{embedding[static_cast<size_t>(favourite * hidden + i)]} << 16;
        float x;
        std::memcpy(&x, &bits, 4);
        x *= 20;
        std::memcpy(&bits, &x, 4);
        embedding.push_back(static_cast<uint16_t>(bits >> 16));
      }
    }
    tensors.push_back({name, t.dtype, {4160, hidden}, embedding.data()});
  }
  write_safetensors(dir.file("model.safetensors"), tensors);
  return dir.path().string();
}

// Found as a crash (issue 26): a model whose vocabulary is larger than its tokenizer's sampled an id
// the tokenizer cannot decode, and the decoder's Error outside the forward pass ended the process.
// Those ids are now never sampled, biased or stopped on; the outputs are the unpadded model's.
TEST_F(EngineTest, PaddedVocabularyIsNeverSampled) {
  const std::vector<int32_t> ids = prompt(3, 24);
  Engine plain(*runner_, tokenizer_, options());
  const Outcome reference = run(plain, {{ids, greedy(12)}}).begin()->second;
  const test::ScratchDir dir;
  const Model padded = load_model(write_padded_demo(dir, reference.tokens[0]));
  ASSERT_EQ(padded.config.vocab_size, 4160);
  // Without a tokenizer nothing is masked: the padded rows win, so the mask below is what holds.
  const TensorParallel padded_runner(padded);
  Engine unmasked(padded_runner, nullptr, options());
  const Outcome raw = run(unmasked, {{ids, greedy(1)}}).begin()->second;
  ASSERT_GE(raw.tokens.at(0), 4096);

  Engine engine(padded_runner, tokenizer_, options());
  EXPECT_EQ(engine.sample_vocab(), 4096);
  const Outcome greedy_out = run(engine, {{ids, greedy(12)}}).begin()->second;
  EXPECT_EQ(greedy_out.tokens, reference.tokens);
  EXPECT_EQ(greedy_out.text, reference.text);
  SamplingParams sampled = greedy(32);
  sampled.temperature = 1.5f;
  sampled.seed = 7;
  sampled.n = 4;
  for (const auto& [key, o] : run(engine, {{ids, sampled}})) {
    EXPECT_EQ(o.finish, FinishReason::Length) << key.second;
    for (int32_t t : o.tokens) EXPECT_LT(t, 4096);
  }
  SamplingParams biased = greedy(4);
  biased.logit_bias = {{4100, 100.0f}};
  try {
    engine.submit({ids, biased}, [](const Event&) {});
    FAIL() << "a bias on an id past the tokenizer was taken";
  } catch (const Error& e) {
    EXPECT_STREQ(e.what(), "logit_bias: token 4100 is outside the vocabulary of 4096");
  }
}

// Grammar sequences batched with free ones: every grammar sample is in the language and ends where
// the grammar completes (without an end-of-sequence token), and the free requests' tokens are
// those of a run without them.
TEST_F(EngineTest, GrammarSequencesInABatchStayInTheirLanguage) {
  const auto g = std::make_shared<const grammar::Grammar>(grammar::parse_gbnf(R"(root ::= "<" word ("," word){0,3} ">"
word ::= [a-z]{1,6})"));
  Engine alone(*runner_, tokenizer_, options());
  const auto free_alone = run(alone, {{prompt(1, 20), greedy(16)}, {prompt(2, 9), greedy(16)}});
  Engine engine(*runner_, tokenizer_, options());
  SamplingParams constrained = greedy(64);
  constrained.grammar = g;
  SamplingParams sampled = constrained;
  sampled.temperature = 1.2f;
  sampled.top_p = 0.95f;
  sampled.seed = 11;
  sampled.n = 3;
  sampled.logprobs = 2;
  std::vector<uint64_t> ids;
  const auto out = run(
      engine,
      {{prompt(1, 20), greedy(16)}, {prompt(4, 12), constrained}, {prompt(2, 9), greedy(16)}, {prompt(5, 7), sampled}},
      &ids);
  ASSERT_EQ(out.size(), 6u);
  const std::regex language("<[a-z]{1,6}(,[a-z]{1,6}){0,3}>");
  for (const auto& [key, o] : out) {
    if (key.first == ids[0] || key.first == ids[2]) continue;
    EXPECT_EQ(o.finish, FinishReason::Stop) << o.text;
    EXPECT_TRUE(std::regex_match(o.text, language)) << o.text;
  }
  EXPECT_EQ(out.at({ids[0], 0}).tokens, free_alone.begin()->second.tokens);
  EXPECT_EQ(out.at({ids[2], 0}).tokens, std::next(free_alone.begin())->second.tokens);
}

// Greedy grammar sequences let the backend pick among the mask's tokens (no logits to the host);
// asking for logprobs sends the same requests down the host's path, which masks the logits and takes
// their argmax: the tokens must be the same, free sequences in the batch too.
TEST_F(EngineTest, GreedyGrammarPicksOnTheBackendAsOnTheHost) {
  const auto g = std::make_shared<const grammar::Grammar>(grammar::parse_gbnf(R"(root ::= "[" item ("," item){0,5} "]"
item ::= [0-9]{1,3} | "\"" [a-z ]{1,12} "\"")"));
  auto outcomes = [&](int32_t logprobs) {
    SamplingParams constrained = greedy(60), free = greedy(12);
    constrained.grammar = g;
    constrained.logprobs = free.logprobs = logprobs;
    Engine engine(*runner_, tokenizer_, options());
    std::vector<uint64_t> ids;
    auto out = run(engine, {{prompt(1, 20), constrained}, {prompt(2, 9), free}, {prompt(6, 15), constrained}}, &ids);
    std::vector<Outcome> ordered;
    for (uint64_t id : ids) ordered.push_back(out.at({id, 0}));
    return ordered;
  };
  const auto backend = outcomes(-1), host = outcomes(0);
  ASSERT_EQ(backend.size(), 3u);
  for (size_t i = 0; i < backend.size(); ++i) {
    EXPECT_EQ(backend[i].tokens, host[i].tokens) << i;
    EXPECT_TRUE(host[i].logprobs.size() == host[i].tokens.size()) << "the host path was taken";
  }
  const std::regex language(R"(\[([0-9]{1,3}|"[a-z ]{1,12}")(,([0-9]{1,3}|"[a-z ]{1,12}")){0,5}\])");
  for (size_t i : {0, 2}) {
    EXPECT_EQ(backend[i].finish, FinishReason::Stop) << backend[i].text;
    EXPECT_TRUE(std::regex_match(backend[i].text, language)) << backend[i].text;
  }
}

// A lazy grammar (tool_choice auto): the output is free until it holds the trigger, then in the
// grammar from the trigger's first byte on. Greedy, the free part is the free run's own text.
TEST_F(EngineTest, ALazyGrammarHoldsFromItsTriggerOn) {
  Engine free_engine(*runner_, tokenizer_, options());
  const auto free_run = run(free_engine, {{prompt(1, 20), greedy(48)}});
  const std::string free_text = free_run.begin()->second.text;
  const size_t at = free_text.find(" a");
  ASSERT_NE(at, std::string::npos) << free_text;
  SamplingParams lazy = greedy(64);
  lazy.grammar =
      std::make_shared<const grammar::Grammar>(grammar::parse_gbnf(R"(root ::= " a" [a-z]* " <" [0-9]{2} ">")"));
  lazy.grammar_trigger = " a";
  Engine engine(*runner_, tokenizer_, options());
  const auto out = run(engine, {{prompt(1, 20), lazy}, {prompt(2, 9), greedy(8)}});
  const auto& o = out.begin()->second;
  EXPECT_EQ(o.finish, FinishReason::Stop) << o.text;
  ASSERT_GE(o.text.size(), at);
  EXPECT_EQ(o.text.substr(0, at), free_text.substr(0, at)) << "the text before the trigger is free";
  EXPECT_TRUE(std::regex_match(o.text.substr(at), std::regex(" a[a-z]* <[0-9]{2}>"))) << o.text;
}

// A listener that throws loses its event; the engine and the other requests go on.
TEST_F(EngineTest, AListenerThatThrowsDoesNotStopTheEngine) {
  Engine engine(*runner_, tokenizer_, options());
  int events = 0;
  engine.submit({prompt(0, 8), greedy(4)}, [&](const Event&) {
    ++events;
    throw std::runtime_error("out of memory posting the event");
  });
  const auto outcomes = run(engine, {{prompt(1, 8), greedy(4)}});
  EXPECT_EQ(events, 4);
  EXPECT_EQ(outcomes.begin()->second.finish, FinishReason::Length);
  EXPECT_EQ(outcomes.begin()->second.tokens.size(), 4u);
  EXPECT_EQ(engine.stats().used_blocks, 0);
}

// The background loop serves requests submitted from other threads.
TEST_F(EngineTest, BackgroundLoop) {
  Engine engine(*runner_, tokenizer_, options());
  engine.start();
  std::mutex m;
  std::condition_variable done;
  int finished = 0;
  for (size_t i = 0; i < 4; ++i) {
    engine.submit({prompt(i, 10 + i), greedy(8)}, [&](const Event& e) {
      if (!e.finish) return;
      std::lock_guard lock(m);
      ++finished;
      done.notify_one();
    });
  }
  std::unique_lock lock(m);
  ASSERT_TRUE(done.wait_for(lock, std::chrono::seconds(30), [&] { return finished == 4; }));
  lock.unlock();
  engine.stop();
  EXPECT_EQ(engine.stats().used_blocks, 0);
}

}  // namespace
}  // namespace nanoserve
