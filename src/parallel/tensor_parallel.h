// A model run across tensor-parallel ranks in one process, one thread per rank
// (rank 0 on the caller's): each rank has its shard of the weights
// (parallel/shard.h), its backend (GPU r for rank r), its Transformer and, in
// its KV caches, its KV heads of every block. Each step runs on every rank at
// once; the collectives between them (parallel/collective.h) keep the residual
// stream identical on all ranks, and rank 0's logits or picks are the step's.
//
// One process rather than one per GPU: the engine, scheduler and server stay
// single, nothing is serialized between processes, and NCCL sets the ranks up
// in one call (ncclCommInitAll).
#pragma once

#include <functional>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "backend/backend.h"
#include "backend/kv_cache.h"
#include "model/transformer.h"
#include "parallel/collective.h"

namespace nanoserve {

class RankThreads;

class TensorParallel {
 public:
  // One rank: the model as loaded, on `backend` (null: a CPU backend of its
  // own).
  explicit TensorParallel(const Model& model, Backend* backend = nullptr);
  // `ranks` ranks of `model` (which must outlive this) on `device`, "cpu" or
  // "cuda", with one GPU per rank. Throws Error naming what does not split, or
  // a missing GPU.
  TensorParallel(const Model& model, int ranks, const std::string& device, const BackendOptions& options);
  ~TensorParallel();
  TensorParallel(const TensorParallel&) = delete;
  TensorParallel& operator=(const TensorParallel&) = delete;

  int ranks() const { return static_cast<int>(ranks_.size()); }
  Backend& backend(int rank) const { return *ranks_[static_cast<size_t>(rank)]->backend; }
  // A rank's config: its heads, KV heads and MLP width (the same on every
  // rank).
  const ModelConfig& rank_config() const { return ranks_[0]->transformer->config(); }
  const Model& model() const { return model_; }  // the model whole, as loaded
  std::string describe() const;                  // the backends, for start-up messages
  // Bytes of KV pool each rank may take: the least any rank's backend allows
  // (Backend::kv_budget).
  int64_t kv_budget(double fraction) const;

  // A KV pool of `num_blocks` blocks: one cache per rank, each on its rank's
  // backend.
  std::vector<KvCache> make_caches(int64_t num_blocks, int64_t block_size, KvDType dtype) const;

  // Transformer::forward and forward_greedy over every rank, with `caches` from
  // make_caches.
  std::vector<float> forward(std::span<const SequenceSlice> slices, std::span<KvCache> caches) const;
  std::vector<int32_t> forward_greedy(std::span<const SequenceSlice> slices, std::span<KvCache> caches,
                                      const AllowedTokens& allowed = {}) const;
  std::vector<float> forward_hidden(std::span<const SequenceSlice> slices, std::span<KvCache> caches) const;

 private:
  struct Rank {
    Model shard;  // empty for the single rank of the loaded model
    std::unique_ptr<Backend> own_backend;
    Backend* backend = nullptr;
    std::unique_ptr<Transformer> transformer;
  };
  // Runs fn(rank) on every rank's thread, with the rank's backend bound;
  // rethrows a rank's error.
  void on_every_rank(const std::function<void(int rank)>& fn) const;
  // step(rank's Transformer, rank's cache) on every rank; rank 0's result is the step's.
  template <typename Step>
  auto rank_zero_result(std::span<KvCache> caches, const Step& step) const;

  const Model& model_;
  std::vector<std::unique_ptr<Rank>> ranks_;  // apart: each Transformer points at its rank's shard
  std::vector<std::unique_ptr<Collective>> collectives_;
  std::unique_ptr<RankThreads> threads_;
};

}  // namespace nanoserve
