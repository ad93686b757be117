#include "backend/cpu/cpu_backend.h"

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <new>

#include <fmt/format.h>

#include "backend/cpu/buffer_pool.h"
#include "backend/cpu/interleaved_q8_0.h"
#include "backend/cpu/ops.h"
#include "backend/cpu/reduced_dot.h"
#include "backend/kv_cache.h"
#include "util/error.h"
#include "util/mapped_file.h"
#include "util/thread_pool.h"

namespace nanoserve {
namespace {

class CpuBackend final : public Backend {
 public:
  // Interleaves the model's Q8_0 products once (interleaved_q8_0.h) where the int8 kernels run.
  explicit CpuBackend(const WeightSet& weights) : weights_(weights), interleaved_(weights.linears.size()) {
    if (!cpu::takes_reduced_dot(DType::Q8_0)) return;
    for (const Linear& linear : weights.linears) {
      const TensorView& w = linear.weight;
      if (w.dtype != DType::Q8_0 || linear.in_out) continue;
      interleaved_[static_cast<size_t>(linear.id)] = std::make_unique<cpu::InterleavedQ8_0>(w);
      release_pages(w.data, w.nbytes);  // the file's copy is read again only for a tied embedding's rows
    }
  }

  std::string name() const override { return "cpu"; }
  std::string describe() const override { return fmt::format("cpu ({} threads)", ThreadPool::global().size()); }

  Buffer allocate(size_t bytes) override { return Buffer(this, pool_.take(bytes), bytes); }
  void upload(const void* host, size_t bytes, void* dst) override { std::memcpy(dst, host, bytes); }
  void download(const void* src, size_t bytes, void* host) override { std::memcpy(host, src, bytes); }
  void copy(const void* src, size_t bytes, void* dst) override { std::memmove(dst, src, bytes); }
  void zero(void* dst, size_t bytes) override { std::memset(dst, 0, bytes); }
  void copy_strided(const float* src, int64_t src_stride, float* dst, int64_t dst_stride, int64_t rows,
                    int64_t cols) override {
    for (int64_t r = 0; r < rows; ++r) {
      std::memmove(dst + r * dst_stride, src + r * src_stride, static_cast<size_t>(cols) * sizeof(float));
    }
  }
  int64_t kv_budget(double) const override { return 0; }

  void embed(Ids ids, float* out) override {
    if (ids == Ids::Tokens) return cpu::embed(weights_.token_embed, step().token_ids, out);
    const std::vector<int32_t> positions(step().positions.begin(), step().positions.end());
    cpu::embed(weights_.position_embed, positions, out);
  }
  void norm(NormKind kind, const float* x, const Norm& params, int64_t rows, int64_t cols, double eps,
            float* out) override {
    cpu::norm(kind, x, params, rows, cols, eps, out);
  }
  void linear(const float* x, int64_t rows, const Linear& layer, float* out) override {
    const cpu::InterleavedQ8_0* interleaved = interleaved_of(layer);
    if (!interleaved) return cpu::linear(x, rows, layer, out);
    interleaved->multiply(x, rows, out);
    cpu::add_bias(layer.bias, rows, out);
  }
  void act_mul(Activation act, float* gate, const float* up, int64_t n) override { cpu::act_mul(act, gate, up, n); }
  void activate(Activation act, float* x, int64_t n) override { cpu::activate(act, x, n); }
  void add(float* x, const float* y, int64_t n) override { cpu::add(x, y, n); }
  void scale(float* x, float factor, int64_t n) override { cpu::scale(x, factor, n); }
  void softcap(float* x, float cap, int64_t n) override { cpu::softcap(x, cap, n); }
  void clamp(float* x, float limit, int64_t n) override { cpu::clamp(x, limit, n); }

  void rope(float* q, int64_t heads, float* k, int64_t kv_heads, int64_t head_dim, bool local,
            RopePairs pairs) override {
    const RopeTable& table = local ? step().local_rope : step().rope;
    cpu::rope(q, table, heads, head_dim, pairs);
    cpu::rope(k, table, kv_heads, head_dim, pairs);
  }

  void attention(int64_t layer, const float* q, const float* k, const float* v, const AttentionParams& params,
                 KvCache& cache, float* out) override;

  void argmax_rows(const float* x, int64_t rows, int64_t cols, std::span<const uint64_t> allowed,
                   int32_t* out) override {
    for (int64_t r = 0; r < rows; ++r) {
      const float* row = x + r * cols;
      out[r] = allowed.empty() ? static_cast<int32_t>(std::max_element(row, row + cols) - row)  // the first of equals
                               : cpu::argmax_allowed(row, cols, allowed.data() + r * allowed_words(cols));
    }
  }
  void gather_rows(const float* src, std::span<const int64_t> rows, int64_t cols, float* dst) override {
    for (size_t i = 0; i < rows.size(); ++i) {
      std::memcpy(dst + static_cast<int64_t>(i) * cols, src + rows[i] * cols,
                  static_cast<size_t>(cols) * sizeof(float));
    }
  }
  void scatter_add_rows(const float* src, std::span<const int64_t> rows, std::span<const float> weights, int64_t cols,
                        float* dst) override {
    for (size_t i = 0; i < rows.size(); ++i) {
      const float* s = src + static_cast<int64_t>(i) * cols;
      float* d = dst + rows[i] * cols;
      for (int64_t j = 0; j < cols; ++j) d[j] += weights[i] * s[j];
    }
  }

 protected:
  void release(void* data, size_t bytes) override { pool_.give(data, bytes); }
  void start_step(const StepLayout& layout) override { step_ = &layout; }
  void end_step() override { step_ = nullptr; }

 private:
  const StepLayout& step() const {
    if (!step_) fail("a backend operation ran outside a forward step");
    return *step_;
  }

  // The interleaved copy of the layer's weights, if it has one. A view without a handle (a test's)
  // runs as it is.
  const cpu::InterleavedQ8_0* interleaved_of(const Linear& layer) const {
    if (layer.id < 0) return nullptr;
    return interleaved_[static_cast<size_t>(weights_.at(layer).id)].get();
  }

  cpu::BufferPool pool_;  // first: the last member gone, after any buffer the others hold
  const StepLayout* step_ = nullptr;
  WeightSet weights_;
  std::vector<std::unique_ptr<cpu::InterleavedQ8_0>> interleaved_;  // by handle; null where not Q8_0
};

// Keys and values are read through per-position row pointers, so that attention never sees the
// block layout; a quantized cache dequantizes each row into scratch first.
void CpuBackend::attention(int64_t layer, const float* q, const float* k, const float* v, const AttentionParams& params,
                           KvCache& cache, float* out) {
  const int64_t q_dim = params.heads * params.head_dim, kv_dim = params.kv_heads * params.head_dim;
  const int64_t block_size = cache.block_size();
  std::vector<const float*> k_rows, v_rows;  // [positions]: rows through the block table
  std::vector<float> k_scratch, v_scratch;   // [positions, kv_dim]: dequantized rows of a quantized cache
  for (const auto& s : step().sequences) {
    const int64_t end = s.first_pos + s.count;
    k_rows.resize(static_cast<size_t>(end));
    v_rows.resize(static_cast<size_t>(end));
    if (cache.dtype() != KvDType::F32) {
      k_scratch.resize(static_cast<size_t>(end * kv_dim));
      v_scratch.resize(k_scratch.size());
    }
    for (int64_t p = 0; p < end; ++p) {
      const int32_t block = s.blocks[static_cast<size_t>(p / block_size)];
      if (p >= s.first_pos) {  // a new token: store its key and value
        const int64_t row = (s.offset + p - s.first_pos) * kv_dim;
        cache.write(layer, block, p % block_size, k + row, v + row);
      }
      float* k_buf = k_scratch.empty() ? nullptr : k_scratch.data() + p * kv_dim;
      float* v_buf = v_scratch.empty() ? nullptr : v_scratch.data() + p * kv_dim;
      k_rows[static_cast<size_t>(p)] = cache.key(layer, block, p % block_size, k_buf);
      v_rows[static_cast<size_t>(p)] = cache.value(layer, block, p % block_size, v_buf);
    }
    cpu::attention(q + s.offset * q_dim, s.count, s.first_pos, k_rows.data(), v_rows.data(), params,
                   out + s.offset * q_dim);
  }
}

}  // namespace

std::unique_ptr<Backend> make_cpu_backend(const WeightSet& weights) { return std::make_unique<CpuBackend>(weights); }

}  // namespace nanoserve
