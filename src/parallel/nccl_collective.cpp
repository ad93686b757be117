#include "parallel/nccl_collective.h"

#include "backend/backend.h"
#include "util/error.h"

#ifdef NANOSERVE_NCCL
#include <nccl.h>

#include "backend/cuda/cuda_backend.h"
#endif

namespace nanoserve {

#ifdef NANOSERVE_NCCL
namespace {

void check(ncclResult_t result, const char* what) {
  if (result != ncclSuccess) fail("NCCL: {}: {}", what, ncclGetErrorString(result));
}

// One rank's communicator, queuing on its backend's stream: the operations run
// in stream order with the kernels around them, and a recorded decode step
// records them too.
class NcclCollective final : public Collective {
 public:
  NcclCollective(ncclComm_t comm, cudaStream_t stream) : comm_(comm), stream_(stream) {}
  ~NcclCollective() override { ncclCommDestroy(comm_); }

  void all_reduce_sum(float* data, int64_t count) override {
    check(ncclAllReduce(data, data, static_cast<size_t>(count), ncclFloat, ncclSum, comm_, stream_), "all-reduce");
  }
  void all_gather(const float* mine, int64_t count, float* all) override {
    check(ncclAllGather(mine, all, static_cast<size_t>(count), ncclFloat, comm_, stream_), "all-gather");
  }

 private:
  ncclComm_t comm_;
  cudaStream_t stream_;
};

}  // namespace

std::vector<std::unique_ptr<Collective>> make_nccl_collectives(const std::vector<Backend*>& backends) {
  std::vector<int> gpus;
  std::vector<cudaStream_t> streams;
  for (Backend* b : backends) {
    const CudaPlacement place = cuda_placement(*b);
    gpus.push_back(place.gpu);
    streams.push_back(place.stream);
  }
  std::vector<ncclComm_t> comms(backends.size());
  check(ncclCommInitAll(comms.data(), static_cast<int>(comms.size()), gpus.data()), "setting up the ranks");
  std::vector<std::unique_ptr<Collective>> out;
  for (size_t r = 0; r < comms.size(); ++r) out.push_back(std::make_unique<NcclCollective>(comms[r], streams[r]));
  return out;
}

#else

std::vector<std::unique_ptr<Collective>> make_nccl_collectives(const std::vector<Backend*>& backends) {
  fail(
      "tensor parallelism over {} GPUs needs NCCL, and this nanoserve was "
      "built without it (configure with NCCL "
      "in /usr/local/cuda)",
      backends.size());
}

#endif

}  // namespace nanoserve

// The plugin's entry point, which the core's make_collectives calls (backend/cuda_plugin.h).
extern "C" void nanoserve_make_nccl_collectives(const std::vector<nanoserve::Backend*>& backends,
                                                std::vector<std::unique_ptr<nanoserve::Collective>>& out) {
  out = nanoserve::make_nccl_collectives(backends);
}
