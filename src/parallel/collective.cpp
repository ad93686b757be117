#include "parallel/collective.h"

#include <algorithm>
#include <condition_variable>
#include <cstring>
#include <mutex>

#include "backend/backend.h"
#include "backend/cuda_plugin.h"
#include "util/error.h"

namespace nanoserve {

namespace {

// What the ranks of a host group share: a generation-counting barrier and each
// rank's pointer.
class HostGroup {
 public:
  explicit HostGroup(int ranks) : ranks_(ranks), inputs_(static_cast<size_t>(ranks)) {}

  int ranks() const { return ranks_; }
  const float* input(int rank) const { return inputs_[static_cast<size_t>(rank)]; }

  // Publishes this rank's input, then waits for every rank's.
  void publish(int rank, const float* input) {
    inputs_[static_cast<size_t>(rank)] = input;
    barrier();
  }

  void barrier() {
    std::unique_lock lock(mutex_);
    const uint64_t generation = generation_;
    if (++arrived_ == ranks_) {
      arrived_ = 0;
      ++generation_;
      all_arrived_.notify_all();
      return;
    }
    all_arrived_.wait(lock, [&] { return generation_ != generation; });
  }

 private:
  const int ranks_;
  std::vector<const float*> inputs_;
  std::mutex mutex_;
  std::condition_variable all_arrived_;
  int arrived_ = 0;
  uint64_t generation_ = 0;
};

// Ranks on threads of one process, their data in host memory (CPU backends).
class HostCollective final : public Collective {
 public:
  HostCollective(std::shared_ptr<HostGroup> group, int rank) : group_(std::move(group)), rank_(rank) {}

  // Every rank sums in rank order, so all get the same bits.
  void all_reduce_sum(float* data, int64_t count) override {
    group_->publish(rank_, data);
    sum_.assign(group_->input(0), group_->input(0) + count);
    for (int r = 1; r < group_->ranks(); ++r) {
      const float* other = group_->input(r);
      for (int64_t i = 0; i < count; ++i) sum_[static_cast<size_t>(i)] += other[i];
    }
    group_->barrier();  // every rank has read every input before any is
                        // overwritten
    std::copy(sum_.begin(), sum_.end(), data);
  }

  void all_gather(const float* mine, int64_t count, float* all) override {
    group_->publish(rank_, mine);
    for (int r = 0; r < group_->ranks(); ++r) {
      std::memcpy(all + r * count, group_->input(r), static_cast<size_t>(count) * sizeof(float));
    }
    group_->barrier();
  }

 private:
  std::shared_ptr<HostGroup> group_;
  int rank_;
  std::vector<float> sum_;
};

// NCCL, from the CUDA plugin; a build without CUDA has no CUDA backends to join.
std::vector<std::unique_ptr<Collective>> cuda_collectives(const std::vector<Backend*>& backends) {
  using Make = void(const std::vector<Backend*>&, std::vector<std::unique_ptr<Collective>>&);
  std::vector<std::unique_ptr<Collective>> out;
  reinterpret_cast<Make*>(cuda_plugin_symbol("nanoserve_make_nccl_collectives"))(backends, out);
  return out;
}

}  // namespace

std::vector<std::unique_ptr<Collective>> make_collectives(const std::vector<Backend*>& backends) {
  const std::string kind = backends.at(0)->name();
  for (const Backend* b : backends) {
    if (b->name() != kind) fail("tensor-parallel ranks run on one kind of backend, not {} and {}", kind, b->name());
  }
  if (kind == "cuda") return cuda_collectives(backends);
  if (kind != "cpu") fail("the {} backend has no collectives for tensor parallelism", kind);
  auto group = std::make_shared<HostGroup>(static_cast<int>(backends.size()));
  std::vector<std::unique_ptr<Collective>> out;
  for (size_t r = 0; r < backends.size(); ++r)
    out.push_back(std::make_unique<HostCollective>(group, static_cast<int>(r)));
  return out;
}

}  // namespace nanoserve
