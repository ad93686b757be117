#include "backend/backend.h"

#include "backend/cpu/cpu_backend.h"
#include "util/error.h"
#include "backend/cuda_plugin.h"

namespace nanoserve {

Buffer& Buffer::operator=(Buffer&& other) noexcept {
  if (this != &other) {
    if (data_) owner_->release(data_, bytes_);
    owner_ = other.owner_;
    data_ = other.data_;
    bytes_ = other.bytes_;
    other.data_ = nullptr;
    other.bytes_ = 0;
  }
  return *this;
}

Buffer::~Buffer() {
  if (data_) owner_->release(data_, bytes_);
}

void Backend::linears(const float* x, int64_t rows, std::span<const Linear* const> layers,
                      std::span<float* const> outs) {
  for (size_t i = 0; i < layers.size(); ++i) linear(x, rows, *layers[i], outs[i]);
}

void Backend::gated_linear(const float* x, int64_t rows, const Linear& gate, const Linear& up, Activation act,
                           float* out) {
  Buffer up_out = floats(rows * up.out_features());  // [rows, intermediate]
  const Linear* layers[] = {&gate, &up};
  float* const outs[] = {out, up_out.floats()};
  linears(x, rows, layers, outs);
  act_mul(act, out, up_out.floats(), rows * gate.out_features());
}

void Backend::add_norm(NormKind kind, float* x, const float* y, const Norm& params, int64_t rows, int64_t cols,
                       double eps, float* out) {
  add(x, y, rows * cols);
  norm(kind, x, params, rows, cols, eps, out);
}

void Backend::rope_attention(int64_t layer, float* q, float* k, const float* v, const AttentionParams& params,
                             bool local, RopePairs pairs, KvCache& cache, float* out) {
  rope(q, params.heads, k, params.kv_heads, params.head_dim, local, pairs);
  attention(layer, q, k, v, params, cache, out);
}

Step Backend::begin_step(StepLayout layout, uint64_t replay_key) { return Step(*this, std::move(layout), replay_key); }

Step::Step(Backend& backend, StepLayout layout, uint64_t replay_key)
    : backend_(&backend), layout_(std::make_unique<const StepLayout>(std::move(layout))), replay_key_(replay_key) {
  backend_->start_step(*layout_);
}

Step::Step(Step&& other) noexcept
    : backend_(other.backend_), layout_(std::move(other.layout_)), replay_key_(other.replay_key_) {}

Step::~Step() {
  if (layout_) backend_->end_step();
}

void Backend::run_step(const Step&, const StepWork& work, int64_t rows, int64_t cols, StepOutput out) {
  work([&](const float* logits) {
    if (out.picks) {
      argmax_rows(logits, rows, cols, out.allowed ? out.allowed() : std::span<const uint64_t>(), out.picks);
    } else {
      download(logits, static_cast<size_t>(rows * cols) * sizeof(float), out.logits);
    }
  });
}

std::unique_ptr<Backend> make_backend(const std::string& device, const WeightSet& weights,
                                      const BackendOptions& options) {
  if (device == "cpu") return make_cpu_backend(weights);  // batch-invariant as it is
  if (device == "cuda") {
    using Make = Backend*(const WeightSet&, const BackendOptions&);
    return std::unique_ptr<Backend>(
        reinterpret_cast<Make*>(cuda_plugin_symbol("nanoserve_make_cuda_backend"))(weights, options));
  }
  fail("--device {}: unknown device; expected cpu or cuda", device);
}

}  // namespace nanoserve
