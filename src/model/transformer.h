// The forward pass of every decoder family: one implementation reading the ArchSpec, calling the
// backend's named operations (backend/backend.h), on the CPU or a GPU alike. It runs a batch of
// sequence slices at once: matrix products over all their tokens together, attention per sequence
// through its block table.
#pragma once

#include <functional>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "backend/backend.h"
#include "backend/collective.h"
#include "backend/kv_cache.h"
#include "model/loader.h"
#include "model/rope.h"

namespace nanoserve {

// Receives named intermediate activations [rows, cols] (names as in tests/fixtures/README.md),
// for verification against reference implementations.
using ActivationSink = std::function<void(const std::string& name, const float* data, int64_t rows, int64_t cols)>;

enum class LogitsFor { None, LastToken, AllTokens };

// New tokens of one sequence: positions first_pos.. ; keys and values of [0, first_pos) are already
// in the cache; `blocks` covers [0, first_pos + tokens.size()).
struct SequenceSlice {
  std::span<const int32_t> tokens;
  int64_t first_pos = 0;
  std::span<const int32_t> blocks;
  LogitsFor logits = LogitsFor::LastToken;
  // The sequence length that picks RoPE frequencies which depend on it (dynamic NTK, LongRoPE), if
  // more than the slice's end: a prompt prefilled in chunks rotates as it would all at once.
  int64_t rope_length = 0;
};

class Transformer {
 public:
  // backend: where it runs (its weights already there); null: on a CPU backend of its own. A
  // tensor-parallel rank's model is its shard (parallel/shard.h), and `share` says which: the
  // pass then sums the row-parallel products and joins the vocabulary across ranks.
  explicit Transformer(const Model& model, Backend* backend = nullptr, const RankShare& share = {});

  // Runs every slice, writes their keys and values into the cache, and returns the logits rows the
  // slices ask for, in slice order ([rows, vocab]).
  std::vector<float> forward(std::span<const SequenceSlice> slices, KvCache& cache,
                             const ActivationSink* sink = nullptr) const;

  // Like forward, but returns each logits row's argmax (the lowest id among equals), picked by the
  // backend: greedy decoding with no copy of the logits to the host. With `allowed`, among each
  // row's allowed tokens (a grammar's mask, computed while the step runs).
  std::vector<int32_t> forward_greedy(std::span<const SequenceSlice> slices, KvCache& cache,
                                      const AllowedTokens& allowed = {}) const;

  // Like forward, but returns the final norm's output instead of logits, for the same rows
  // ([rows, hidden]): the hidden states an embedding model pools.
  std::vector<float> forward_hidden(std::span<const SequenceSlice> slices, KvCache& cache) const;

  // One sequence in its own cache: runs tokens at positions cache.length() onwards and advances it.
  // Throws Error if the cache is full.
  std::vector<float> forward(std::span<const int32_t> tokens, SequenceCache& cache, LogitsFor which,
                             const ActivationSink* sink = nullptr) const;

  const ModelConfig& config() const { return model_.config; }
  Backend& backend() const { return *backend_; }
  SequenceCache new_cache(int64_t capacity, KvDType dtype = KvDType::F32) const {
    return SequenceCache(model_.config.kv_shape(), capacity, 16, dtype, *backend_);
  }

 private:
  struct Batch;  // per-call state: the backend's Step and the sink
  void embed(const Batch& batch, float* x) const;
  void attention_block(const Batch& batch, int64_t layer, const float* normed, KvCache& cache, float* out) const;
  void project_qkv(const Batch& batch, int64_t layer, const float* normed, float* q, float* k, float* v) const;
  void mlp_block(int64_t layer, const float* normed, int64_t tokens, float* out) const;
  void moe_block(int64_t layer, const float* normed, int64_t tokens, float* out) const;
  // What a step's rows end in: the LM head's logits, or the final norm's output.
  enum class Head { Logits, Hidden };
  // The final norm of the rows the slices ask for, [rows, hidden] in the backend's memory.
  Buffer final_rows(const Batch& batch, const float* x) const;
  // Those rows' logits, [rows, vocab] (empty: none).
  Buffer logits(const Batch& batch, const float* x) const;
  // Every rank's [rows, its vocabulary rows] logits, side by side: [rows, vocab].
  Buffer join_vocabulary(const float* mine, int64_t rows) const;
  // This rank's embedding row of a token, or -1 when another rank's share holds it.
  int32_t embedding_row(int32_t id) const;
  // Sums a row-parallel product's partial sums across ranks, in place (nothing with one rank).
  void sum_across_ranks(float* x, int64_t count) const;
  // A step's host side: checks the slices, lays them out and begins the backend's step.
  Batch prepare(std::span<const SequenceSlice> slices, KvCache& cache, const ActivationSink* sink, Head head) const;
  // The key under which the backend may replay the step (Backend::begin_step), or 0.
  uint64_t replay_key(std::span<const SequenceSlice> slices, const KvCache& cache, int64_t tokens, int64_t logit_rows,
                      bool sink, Head head) const;
  // Its device side: every layer, leaving the residual stream [tokens, hidden] (no copies to or
  // from the host, but the sink's and MoE routing's).
  Buffer residual(const Batch& batch, KvCache& cache) const;
  // Both sides and the head, the results going where `output` says once it knows how many rows
  // there are.
  void step(std::span<const SequenceSlice> slices, KvCache& cache, const ActivationSink* sink, Head head,
            const std::function<Backend::StepOutput(int64_t rows)>& output) const;

  const Model& model_;
  RankShare share_;
  std::unique_ptr<Backend> own_backend_;
  Backend* backend_;
};

}  // namespace nanoserve
