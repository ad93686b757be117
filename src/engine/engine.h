// The inference engine: requests in, streams of events out. Each step schedules a batch (decode
// tokens and prefill chunks of many sequences), runs one forward pass over it, and samples.
// submit() and cancel() may be called from any thread; step() runs on one thread (the caller's,
// or the engine's own after start()).
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <future>
#include <memory>
#include <mutex>
#include <thread>
#include <unordered_set>

#include "engine/block_manager.h"
#include "engine/request.h"
#include "engine/scheduler.h"
#include "engine/step_profile.h"
#include "grammar/token_trie.h"
#include "backend/kv_cache.h"
#include "model/transformer.h"
#include "parallel/tensor_parallel.h"
#include "tokenizer/tokenizer.h"

namespace nanoserve {

struct EngineOptions {
  int64_t kv_cache_bytes = 256ll << 20;  // memory for the KV block pool
  int64_t block_size = 16;               // positions per KV block
  KvDType kv_dtype = KvDType::F32;       // how cached keys and values are stored
  SchedulerLimits limits;
  bool prefix_caching = true;
  // The longest sequence (prompt + generated), at most the model's max_position_embeddings; 0: that.
  // A shorter one keeps requests within what the KV pool was sized for (RoPE scaling is unchanged).
  int64_t max_model_len = 0;
};

// options.max_model_len, or the model's context when 0; throws Error when it is longer than the model's.
int64_t resolve_max_model_len(const EngineOptions& options, const ModelConfig& config);

struct EngineStats {
  int64_t block_size = 0;  // tokens per KV block
  int64_t total_blocks = 0, used_blocks = 0, peak_used_blocks = 0;
  int64_t running = 0, waiting = 0;
  int64_t prefix_queries = 0, prefix_hits = 0;
  int64_t preemptions = 0;
  int64_t prompt_tokens_computed = 0, generated_tokens = 0;
};

class Engine {
 public:
  // tokenizer may be null: events then carry no text, and stop strings are refused.
  // runner: the model on one backend, or split across tensor-parallel ranks (kv_cache_bytes is then
  // each rank's); it outlives the engine.
  Engine(const TensorParallel& runner, const Tokenizer* tokenizer, const EngineOptions& options);
  ~Engine();

  // Validates and queues a request; returns its id. Throws Error naming what is wrong (bad
  // parameter, prompt longer than the context, more KV than the whole pool).
  uint64_t submit(Request request, EventCallback callback);
  void cancel(uint64_t request_id);  // its samples end with FinishReason::Cancelled
  void cancel_all();                 // every request queued or running so far (server shutdown)

  bool step();            // one scheduling step; false when there was nothing to do
  void run_until_idle();  // steps until every request has finished

  void start();  // runs steps on a background thread until stop()
  void stop();

  EngineStats stats() const;
  const ModelConfig& config() const { return model_.config; }
  int64_t max_model_len() const { return max_model_len_; }  // the longest sequence a request may make
  int64_t sample_vocab() const { return sample_vocab_; }    // ids that may be sampled, biased or stopped on

 private:
  void drain_inbox();
  void prepare_sampling(Sequence& s);  // a generation's sampler, detokenizer, stops and grammar
  // One step's work, the scheduled slices split by kind: embeddings are pooled, generations sample.
  void embed_step(const std::vector<ScheduledSlice>& plan);
  void generate_step(const std::vector<ScheduledSlice>& plan);
  void sample(Sequence& s, std::span<const float> logits);
  // The end-of-sequence tokens a sequence's grammar allows where it can end: none with ignore_eos.
  std::span<const int64_t> grammar_end_tokens(const Sequence& s) const;
  // Starts computing the allowed tokens of the scheduled grammar sequences, on other threads while
  // the forward pass runs; the returned futures finish before sampling.
  std::vector<std::future<void>> prepare_masks(const std::vector<ScheduledSlice>& plan);
  void watch_trigger(Sequence& s, int32_t token);  // a lazy grammar: start its matcher at the trigger
  void append(Sequence& s, int32_t token, const TokenLogprob* logprob);  // the chosen token, as an event
  void fork_samples(Sequence& first);
  void finish(Sequence& s, FinishReason reason, Event event);
  void fail_all(const std::string& message);  // every sequence scheduled, running or waiting
  // A generation step's outputs, a row per sequence that wants logits.
  struct StepResults {
    std::vector<float> logits;          // [rows, vocab]: sequences sample on the host
    std::vector<int32_t> picks;         // [rows]: or the backend picked greedily
    std::vector<uint64_t> allowed;      // [rows, allowed_words(vocab)]: what it picked among, if masked
    std::vector<std::string> refusals;  // [rows]: why a row's grammar allowed nothing ("" if it did)
  };
  // Each row's allowed tokens for the backend's pick: its grammar's, else the tokenizer's ids.
  void fill_allowed(const std::vector<ScheduledSlice>& plan, StepResults& results) const;
  void process_logits(const std::vector<ScheduledSlice>& plan, bool greedy, const StepResults& results);
  bool is_eos(int32_t token) const;
  void publish_stats(int64_t prompt_tokens, int64_t generated);  // for stats(), read on other threads

  static constexpr size_t kMaskThreads = 4;  // threads computing grammar masks during a forward pass

  const Model& model_;
  const Tokenizer* tokenizer_;
  // Tokens that may be sampled: the model's vocabulary, less the ids past the tokenizer's (models
  // pad their embedding rows to a multiple of 64 or 128; those ids have no text).
  int64_t sample_vocab_;
  int64_t max_model_len_;
  std::shared_ptr<const grammar::TokenTrie> trie_;  // the vocabulary as a byte trie, built for the first grammar
  const TensorParallel& ranks_;
  std::vector<KvCache> caches_;  // the KV pool: one cache per rank
  int64_t num_blocks_;
  BlockManager blocks_;
  Scheduler scheduler_;

  mutable std::mutex mutex_;  // guards the inbox, cancellations and stats
  std::condition_variable wake_;
  std::deque<std::unique_ptr<Sequence>> inbox_;
  std::unordered_set<uint64_t> cancelled_;
  bool cancel_everything_ = false;
  uint64_t next_id_ = 1;
  EngineStats stats_;
  std::thread loop_;
  std::atomic<bool> stopping_{false};
  StepProfile profile_;  // NANOSERVE_ENGINE_PROFILE
};

}  // namespace nanoserve
