#include "parallel/tensor_parallel.h"

#include <fmt/format.h>

#include <algorithm>
#include <condition_variable>
#include <exception>
#include <limits>
#include <mutex>
#include <thread>

#include "backend/cpu/cpu_backend.h"
#include "parallel/shard.h"
#include "util/error.h"

namespace nanoserve {

// A thread for each rank but the first, started once; run() hands every rank
// the same job.
class RankThreads {
 public:
  explicit RankThreads(int ranks) : errors_(static_cast<size_t>(ranks)) {
    for (int r = 1; r < ranks; ++r) threads_.emplace_back([this, r] { loop(r); });
  }
  ~RankThreads() {
    {
      std::lock_guard lock(mutex_);
      stopping_ = true;
    }
    wake_.notify_all();
    for (auto& t : threads_) t.join();
  }

  // fn(0) on the caller's thread and fn(r) on rank r's; returns when all are
  // done, rethrowing the lowest rank's error.
  void run(const std::function<void(int)>& fn) {
    {
      std::lock_guard lock(mutex_);
      job_ = &fn;
      pending_ = static_cast<int>(threads_.size());
      ++generation_;
    }
    wake_.notify_all();
    errors_[0] = capture(fn, 0);
    {
      std::unique_lock lock(mutex_);
      done_.wait(lock, [&] { return pending_ == 0; });
    }
    for (const auto& e : errors_) {
      if (e) std::rethrow_exception(e);
    }
  }

 private:
  static std::exception_ptr capture(const std::function<void(int)>& fn, int rank) {
    try {
      fn(rank);
      return nullptr;
    } catch (...) {
      return std::current_exception();
    }
  }

  void loop(int rank) {
    uint64_t seen = 0;
    for (;;) {
      const std::function<void(int)>* job;
      {
        std::unique_lock lock(mutex_);
        wake_.wait(lock, [&] { return stopping_ || generation_ != seen; });
        if (stopping_) return;
        seen = generation_;
        job = job_;
      }
      errors_[static_cast<size_t>(rank)] = capture(*job, rank);
      std::lock_guard lock(mutex_);
      if (--pending_ == 0) done_.notify_one();
    }
  }

  std::vector<std::thread> threads_;
  std::vector<std::exception_ptr> errors_;  // [ranks], of the last run
  std::mutex mutex_;
  std::condition_variable wake_, done_;
  const std::function<void(int)>* job_ = nullptr;
  uint64_t generation_ = 0;
  int pending_ = 0;
  bool stopping_ = false;
};

TensorParallel::TensorParallel(const Model& model, Backend* backend)
    : model_(model), threads_(std::make_unique<RankThreads>(1)) {
  auto& rank = *ranks_.emplace_back(std::make_unique<Rank>());
  if (!backend) rank.own_backend = make_cpu_backend(model);
  rank.backend = backend ? backend : rank.own_backend.get();
  rank.transformer = std::make_unique<Transformer>(model, rank.backend);
}

TensorParallel::TensorParallel(const Model& model, int ranks, const std::string& device, const BackendOptions& options)
    : model_(model) {
  check_splits(model, ranks);
  std::vector<Backend*> backends;
  for (int r = 0; r < ranks; ++r) {
    auto& rank = *ranks_.emplace_back(std::make_unique<Rank>());
    rank.shard = shard_model(model, r, ranks);
    BackendOptions rank_options = options;
    rank_options.gpu = r;
    rank.own_backend = make_backend(device, rank.shard, rank_options);
    rank.backend = rank.own_backend.get();
    backends.push_back(rank.backend);
  }
  if (ranks > 1) collectives_ = make_collectives(backends);
  const bool vocab_parallel = ranks > 1 && splits_vocabulary(model.config, ranks);
  for (int r = 0; r < ranks; ++r) {
    Rank& rank = *ranks_[static_cast<size_t>(r)];
    const RankShare share{r, ranks, ranks > 1 ? collectives_[static_cast<size_t>(r)].get() : nullptr, vocab_parallel,
                          vocab_parallel ? r * (model.config.vocab_size / ranks) : 0};
    rank.transformer = std::make_unique<Transformer>(rank.shard, rank.backend, share);
  }
  threads_ = std::make_unique<RankThreads>(ranks);
}

// The threads and then the collectives go first (declared last); each rank goes with its GPU
// current.
TensorParallel::~TensorParallel() {
  threads_.reset();
  collectives_.clear();
  for (auto& rank : ranks_) {
    try {
      rank->backend->bind_thread();
    } catch (const Error&) {  // a GPU that cannot be selected now: its memory goes back as it can
    }
    rank.reset();
  }
}

std::string TensorParallel::describe() const {
  if (ranks() == 1) return backend(0).describe();
  std::vector<std::string> each;
  for (int r = 0; r < ranks(); ++r) each.push_back(backend(r).describe());
  return fmt::format("{} tensor-parallel ranks: {}", ranks(), fmt::join(each, "; "));
}

int64_t TensorParallel::kv_budget(double fraction) const {
  int64_t budget = std::numeric_limits<int64_t>::max();
  for (int r = 0; r < ranks(); ++r) {
    backend(r).bind_thread();
    budget = std::min(budget, backend(r).kv_budget(fraction));
  }
  backend(0).bind_thread();
  return budget;
}

std::vector<KvCache> TensorParallel::make_caches(int64_t num_blocks, int64_t block_size, KvDType dtype) const {
  std::vector<KvCache> caches;
  caches.reserve(static_cast<size_t>(ranks()));
  for (int r = 0; r < ranks(); ++r)
    caches.emplace_back(rank_config().kv_shape(), num_blocks, block_size, dtype, backend(r));
  backend(0).bind_thread();
  return caches;
}

void TensorParallel::on_every_rank(const std::function<void(int rank)>& fn) const {
  threads_->run([&](int r) {
    backend(r).bind_thread();
    fn(r);
  });
}

template <typename Step>
auto TensorParallel::rank_zero_result(std::span<KvCache> caches, const Step& step) const {
  decltype(step(*ranks_[0]->transformer, caches[0])) result;
  on_every_rank([&](int r) {
    auto mine = step(*ranks_[static_cast<size_t>(r)]->transformer, caches[static_cast<size_t>(r)]);
    if (r == 0) result = std::move(mine);
  });
  return result;
}

std::vector<float> TensorParallel::forward(std::span<const SequenceSlice> slices, std::span<KvCache> caches) const {
  return rank_zero_result(caches, [&](const Transformer& t, KvCache& cache) { return t.forward(slices, cache); });
}

std::vector<float> TensorParallel::forward_hidden(std::span<const SequenceSlice> slices,
                                                  std::span<KvCache> caches) const {
  return rank_zero_result(caches,
                          [&](const Transformer& t, KvCache& cache) { return t.forward_hidden(slices, cache); });
}

std::vector<int32_t> TensorParallel::forward_greedy(std::span<const SequenceSlice> slices, std::span<KvCache> caches,
                                                    const AllowedTokens& allowed) const {
  // Every rank picks from the same logits; only rank 0's picks are kept, so only it needs the mask.
  return rank_zero_result(caches, [&](const Transformer& t, KvCache& cache) {
    return t.forward_greedy(slices, cache, &t == ranks_[0]->transformer.get() ? allowed : AllowedTokens());
  });
}

}  // namespace nanoserve
