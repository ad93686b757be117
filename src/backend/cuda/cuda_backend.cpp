#include "backend/cuda/cuda_backend.h"

#include <cublas_v2.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cstring>
#include <unordered_map>

#include <fmt/format.h>

#include "backend/cuda/check.h"
#include "backend/cuda/device_weights.h"
#include "backend/cuda/kernels.h"
#include "backend/cuda/op_profile.h"
#include "backend/kv_cache.h"

namespace nanoserve {
namespace {

using cuda::check;

cuda::NormType norm_type(NormKind kind) {
  switch (kind) {
    case NormKind::Rms: return cuda::NormType::Rms;
    case NormKind::RmsPlusOne: return cuda::NormType::RmsPlusOne;
    case NormKind::Layer: return cuda::NormType::Layer;
  }
  return cuda::NormType::Rms;
}

cuda::ActType act_type(Activation act) {
  return act == Activation::Silu ? cuda::ActType::Silu : cuda::ActType::GeluTanh;
}

cudaDataType data_type(cuda::WeightType type) {
  switch (type) {
    case cuda::WeightType::F32: return CUDA_R_32F;
    case cuda::WeightType::BF16: return CUDA_R_16BF;
    case cuda::WeightType::F16: return CUDA_R_16F;
    default: fail("no cuBLAS type for quantized blocks (they are widened to bf16 first)");
  }
}

// Packs host arrays into one upload, each at a 16-byte aligned offset.
class Staging {
 public:
  template <typename T>
  size_t add(const T* data, size_t count) {
    const size_t offset = (bytes_.size() + 15) / 16 * 16;
    bytes_.resize(offset + count * sizeof(T));
    if (count) std::memcpy(bytes_.data() + offset, data, count * sizeof(T));
    return offset;
  }
  const std::vector<uint8_t>& bytes() const { return bytes_; }

 private:
  std::vector<uint8_t> bytes_;
};

// Page-locked host memory, grown as needed. A copy from it is queued behind the kernels before it
// and the host goes on; one from pageable memory waits for them to finish before staging its bytes.
class PinnedBuffer {
 public:
  PinnedBuffer() = default;
  PinnedBuffer(const PinnedBuffer&) = delete;
  PinnedBuffer& operator=(const PinnedBuffer&) = delete;
  ~PinnedBuffer() {
    if (data_) cudaFreeHost(data_);
  }
  // A pinned copy of `bytes` bytes at src, valid until the next call (the caller's copies from it
  // have finished by then).
  const void* hold(const void* src, size_t bytes) {
    if (bytes > capacity_) {
      if (data_) cudaFreeHost(data_);
      data_ = nullptr;
      capacity_ = 0;
      check(cudaMallocHost(&data_, bytes), "allocating pinned host memory");
      capacity_ = bytes;
    }
    std::memcpy(data_, src, bytes);
    return data_;
  }

 private:
  void* data_ = nullptr;
  size_t capacity_ = 0;
};

// Recorded decode steps by key, destroyed with the backend.
class StepGraphs {
 public:
  StepGraphs() = default;
  StepGraphs(const StepGraphs&) = delete;
  StepGraphs& operator=(const StepGraphs&) = delete;
  ~StepGraphs() { clear(); }

  cudaGraphExec_t find(uint64_t key) const {
    const auto it = graphs_.find(key);
    return it == graphs_.end() ? nullptr : it->second;
  }
  void add(uint64_t key, cudaGraphExec_t graph) { graphs_[key] = graph; }
  void clear() {
    for (const auto& [key, graph] : graphs_) cudaGraphExecDestroy(graph);
    graphs_.clear();
  }

 private:
  std::unordered_map<uint64_t, cudaGraphExec_t> graphs_;
};

// The backend's stream, synchronized before it goes.
struct Stream {
  cudaStream_t stream = nullptr;
  Stream() { check(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking), "creating a stream"); }
  ~Stream() {
    cudaStreamSynchronize(stream);
    cudaStreamDestroy(stream);
  }
  Stream(const Stream&) = delete;
  Stream& operator=(const Stream&) = delete;
};

class CudaBackend final : public Backend {
 public:
  // Half-precision models attend on the tensor cores (their embedding's dtype tells).
  CudaBackend(const WeightSet& weights, const BackendOptions& options)
      : gpu_(options.gpu),
        weights_(weights),
        batch_invariant_(options.batch_invariant),
        tensor_core_attention_(!options.batch_invariant && weights.token_embed.dtype != DType::F32),
        profile_(stream_),
        record_steps_(options.cuda_graphs && !profile_.enabled()) {
    check(cublasCreate(&cublas_), "creating a handle");
    check(cublasSetStream(cublas_, stream_), "setting the stream");
    // Its own workspace, so that recorded products never allocate.
    cublas_workspace_ = allocate(kCublasWorkspace);
    check(cublasSetWorkspace(cublas_, cublas_workspace_.data(), kCublasWorkspace), "setting the workspace");
    // Freed activations stay in the stream's pool for the next step instead of going back to the driver.
    cudaMemPool_t pool;
    check(cudaDeviceGetDefaultMemPool(&pool, gpu_), "getting the memory pool");
    uint64_t keep = UINT64_MAX;
    check(cudaMemPoolSetAttribute(pool, cudaMemPoolAttrReleaseThreshold, &keep), "configuring the memory pool");
    check(cudaDeviceGetAttribute(&multiprocessors_, cudaDevAttrMultiProcessorCount, gpu_),
          "reading the GPU's properties");
  }
  ~CudaBackend() override { cublasDestroy(cublas_); }

  std::string name() const override { return "cuda"; }
  std::string describe() const override {
    cudaDeviceProp prop{};
    check(cudaGetDeviceProperties(&prop, gpu_), "reading the GPU's properties");
    return fmt::format("cuda (GPU {}: {}, {:.2f} GiB of weights on the GPU{})", gpu_, prop.name,
                       static_cast<double>(weights_.bytes()) / (1 << 30), batch_invariant_ ? ", batch-invariant" : "");
  }

  Buffer allocate(size_t bytes) override {
    void* data = nullptr;
    if (cudaMallocAsync(&data, std::max<size_t>(bytes, 1), stream_) != cudaSuccess) {
      fail(
          "out of GPU memory allocating {:.1f} MiB ({}); lower --gpu-memory-utilization, --kv-cache-memory or the "
          "batch size",
          static_cast<double>(bytes) / (1 << 20), cuda::free_memory_after_failure());
    }
    return Buffer(this, data, bytes);
  }
  void upload(const void* host, size_t bytes, void* dst) override {
    refuse_while_recording("a copy to the GPU");
    check(cudaMemcpyAsync(dst, host, bytes, cudaMemcpyHostToDevice, stream_), "copying to the GPU");
  }
  void download(const void* src, size_t bytes, void* host) override {
    refuse_while_recording("a copy from the GPU");
    check(cudaMemcpyAsync(host, src, bytes, cudaMemcpyDeviceToHost, stream_), "copying from the GPU");
    check(cudaStreamSynchronize(stream_), "running the forward pass");
    profile_.collect();
  }
  void copy(const void* src, size_t bytes, void* dst) override {
    check(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToDevice, stream_), "copying on the GPU");
  }
  void zero(void* dst, size_t bytes) override { check(cudaMemsetAsync(dst, 0, bytes, stream_), "clearing GPU memory"); }
  void copy_strided(const float* src, int64_t src_stride, float* dst, int64_t dst_stride, int64_t rows,
                    int64_t cols) override {
    check(cudaMemcpy2DAsync(dst, static_cast<size_t>(dst_stride) * sizeof(float), src,
                            static_cast<size_t>(src_stride) * sizeof(float), static_cast<size_t>(cols) * sizeof(float),
                            static_cast<size_t>(rows), cudaMemcpyDeviceToDevice, stream_),
          "copying on the GPU");
  }
  void bind_thread() override { check(cudaSetDevice(gpu_), "selecting the GPU"); }
  int gpu() const { return gpu_; }
  cudaStream_t stream() const { return stream_; }
  int64_t kv_budget(double fraction) const override {
    size_t free = 0, total = 0;
    check(cudaMemGetInfo(&free, &total), "reading the GPU's memory");
    const double budget = fraction * static_cast<double>(total) - static_cast<double>(total - free);
    return std::max<int64_t>(0, static_cast<int64_t>(budget));
  }

  void embed(Ids ids, float* out) override {
    const cuda::Matrix& m = ids == Ids::Tokens ? weights_.token_embed() : weights_.position_embed();
    const int32_t* rows = ids == Ids::Tokens ? step_.token_ids : step_.positions;
    timed("embed", [&] { cuda::embed(m, rows, step_.tokens, out, stream_); });
  }
  void norm(NormKind kind, const float* x, const Norm& params, int64_t rows, int64_t cols, double eps,
            float* out) override {
    check_norm_width(cols);
    const auto [weight, bias] = weights_.at(params);
    timed("norm",
          [&] { cuda::norm(norm_type(kind), x, weight, bias, rows, cols, static_cast<float>(eps), out, stream_); });
  }
  void add_norm(NormKind kind, float* x, const float* y, const Norm& params, int64_t rows, int64_t cols, double eps,
                float* out) override {
    check_norm_width(cols);
    const auto [weight, bias] = weights_.at(params);
    timed("add_norm", [&] {
      cuda::add_norm(norm_type(kind), x, y, weight, bias, rows, cols, static_cast<float>(eps), out, stream_);
    });
  }
  void linear(const float* x, int64_t rows, const Linear& layer, float* out) override;
  void linears(const float* x, int64_t rows, std::span<const Linear* const> layers,
               std::span<float* const> outs) override;
  void gated_linear(const float* x, int64_t rows, const Linear& gate, const Linear& up, Activation act,
                    float* out) override;
  void act_mul(Activation act, float* gate, const float* up, int64_t n) override {
    timed("act_mul", [&] { cuda::act_mul(act_type(act), gate, up, n, stream_); });
  }
  void activate(Activation act, float* x, int64_t n) override {
    timed("activate", [&] { cuda::activate(act_type(act), x, n, stream_); });
  }
  void add(float* x, const float* y, int64_t n) override {
    timed("add", [&] { cuda::add(x, y, n, stream_); });
  }
  void scale(float* x, float factor, int64_t n) override {
    timed("scale", [&] { cuda::scale(x, factor, n, stream_); });
  }
  void softcap(float* x, float cap, int64_t n) override {
    timed("softcap", [&] { cuda::softcap(x, cap, n, stream_); });
  }
  void clamp(float* x, float limit, int64_t n) override {
    timed("clamp", [&] { cuda::clamp(x, limit, n, stream_); });
  }
  void rope(float* q, int64_t heads, float* k, int64_t kv_heads, int64_t head_dim, bool local,
            RopePairs pairs) override {
    timed("rope", [&] { cuda::rope(q, heads, k, kv_heads, step_.tokens, head_dim, rotation(local, pairs), stream_); });
  }
  void attention(int64_t layer, const float* q, const float* k, const float* v, const AttentionParams& params,
                 KvCache& cache, float* out) override {
    attend(layer, q, k, v, params, {}, cache, out);
  }
  // Decode steps rotate in the attention kernel.
  void rope_attention(int64_t layer, float* q, float* k, const float* v, const AttentionParams& params, bool local,
                      RopePairs pairs, KvCache& cache, float* out) override {
    if (!step_.one_token_slices) return Backend::rope_attention(layer, q, k, v, params, local, pairs, cache, out);
    attend(layer, q, k, v, params, rotation(local, pairs), cache, out);
  }
  void argmax_rows(const float* x, int64_t rows, int64_t cols, std::span<const uint64_t> allowed,
                   int32_t* out) override {
    const auto timer = profile_.time("argmax_rows");
    refuse_while_recording("a pick copied to the host");
    Buffer picks = allocate(static_cast<size_t>(rows) * sizeof(int32_t));
    Buffer bits;
    if (!allowed.empty()) {  // queued behind the step's kernels, which may still run
      bits = allocate(allowed.size_bytes());
      check(cudaMemcpyAsync(bits.data(), mask_staging_.hold(allowed.data(), allowed.size_bytes()), allowed.size_bytes(),
                            cudaMemcpyHostToDevice, stream_),
            "copying the allowed tokens to the GPU");
    }
    cuda::argmax_rows(x, rows, cols, static_cast<const uint64_t*>(bits.data()), static_cast<int32_t*>(picks.data()),
                      stream_);
    launched("argmax_rows");
    download(picks.data(), static_cast<size_t>(rows) * sizeof(int32_t), out);
  }
  void gather_rows(const float* src, std::span<const int64_t> rows, int64_t cols, float* dst) override {
    const auto timer = profile_.time("gather_rows");
    Buffer indices = upload_array(rows.data(), rows.size());
    cuda::gather_rows(src, static_cast<const int64_t*>(indices.data()), static_cast<int64_t>(rows.size()), cols, dst,
                      stream_);
    launched("gather_rows");
  }
  void scatter_add_rows(const float* src, std::span<const int64_t> rows, std::span<const float> weights, int64_t cols,
                        float* dst) override {
    const auto timer = profile_.time("scatter_add_rows");
    Buffer indices = upload_array(rows.data(), rows.size()), factors = upload_array(weights.data(), weights.size());
    cuda::scatter_add_rows(src, static_cast<const int64_t*>(indices.data()), static_cast<const float*>(factors.data()),
                           static_cast<int64_t>(rows.size()), cols, dst, stream_);
    launched("scatter_add_rows");
  }

 protected:
  void release(void* data, size_t) override { cudaFreeAsync(data, stream_); }
  void start_step(const StepLayout& layout) override;
  void reserve_arrivals(int64_t count);
  void run_step(const Step& step, const StepWork& work, int64_t rows, int64_t cols, StepOutput out) override;

 private:
  template <typename T>
  Buffer upload_array(const T* data, size_t count) {
    Buffer b = allocate(count * sizeof(T));
    upload(data, count * sizeof(T), b.data());
    return b;
  }
  cuda::Rotation rotation(bool local, RopePairs pairs) const {
    cuda::Rotation r = local ? local_rope_ : rope_;
    r.interleaved = pairs == RopePairs::Interleaved;
    return r;
  }
  void attend(int64_t layer, const float* q, const float* k, const float* v, const AttentionParams& params,
              const cuda::Rotation& rotation, KvCache& cache, float* out);
  void launched(const char* what) { check(cudaGetLastError(), what); }
  static void check_norm_width(int64_t cols) {
    if (cols > cuda::kMaxNormColumns) {
      fail("the cuda backend normalizes rows of up to {} values, not {}", cuda::kMaxNormColumns, cols);
    }
  }
  // Which kernel multiplies by w (see linear).
  bool takes_tensor_cores(const cuda::Matrix& w) const {
    return batch_invariant_ && cuda::tensor_core_linear_fits({nullptr, cuda::product_type(w.type), w.rows, w.cols});
  }
  bool takes_matvec(const cuda::Matrix& w, int64_t rows) const {
    return !takes_tensor_cores(w) && rows <= cuda::kMatvecRows;
  }
  cudaGraphExec_t record(const StepWork& work, const LogitsUser& use);
  // A recorded step replays without its host side: a copy to or from the host inside one breaks the
  // promise of its replay key (Backend::begin_step), a bug in the caller.
  void refuse_while_recording(const char* what) const {
    if (recording_) fail("{} while recording a decode step: a step with host copies needs replay key 0", what);
  }
  Buffer converted_input(const float* x, int64_t rows, const cuda::Matrix& w);
  void product(const void* input, int64_t rows, const Linear& layer, float* out);
  // Runs `launch` (kernels on the stream) timed under `name`, and checks that it launched.
  template <typename Launch>
  void timed(const char* name, Launch&& launch) {
    const auto timer = profile_.time(name);
    launch();
    launched(name);
  }

  static constexpr size_t kCublasWorkspace = size_t{32} << 20;
  static constexpr int64_t kMaxRecordedRows = 64;  // larger decode steps are bound by the GPU, not by launches

  int gpu_;
  cuda::DeviceWeights weights_;
  bool batch_invariant_;
  // Prefill attention in bf16 on the tensor cores (flash_attention.cu), as the products of a
  // half-precision model round their inputs; float32 models keep float32 attention (the test
  // fixtures' exact path), and so does batch-invariant mode (one arithmetic for every slice).
  bool tensor_core_attention_;
  int multiprocessors_ = 0;
  Stream stream_holder_;
  cudaStream_t stream_ = stream_holder_.stream;
  cublasHandle_t cublas_ = nullptr;
  cuda::OpProfile profile_;
  Buffer cublas_workspace_;
  // Split decode attention's counters [singles, kv_heads]: zeros between steps, at a fixed place
  // for recorded ones, so sized before a step runs for the most KV heads an attention has had.
  Buffer attention_arrivals_;
  int64_t attention_kv_heads_ = 0;  // 0: no attention has run yet, and no step is recorded
  int64_t longest_single_ = 0;      // the most keys a decode query of the step attends to
  Buffer step_buffer_;              // the step's arrays, which step_ and the tables point into
  cuda::StepArrays step_;
  cuda::Rotation rope_, local_rope_;  // the step's tables (interleaved set per call)
  // Recorded decode steps: their kernels read the step arrays at fixed places in step_buffer_ and
  // write their picks to picks_, so both stay put while recordings exist.
  bool record_steps_;
  bool recording_ = false;
  Buffer picks_;               // [kMaxRecordedRows]
  Buffer logits_;              // [kMaxRecordedRows, vocab]
  PinnedBuffer mask_staging_;  // argmax_rows' allowed tokens on their way up
  StepGraphs graphs_;
};

// The arrays go in one upload, those whose size depends only on the step's shape first, so that
// a decode step of a given batch finds them where its recording reads them.
void CudaBackend::start_step(const StepLayout& layout) {
  const std::vector<int32_t> positions(layout.positions.begin(), layout.positions.end());
  std::vector<int32_t> table_of_token, tables, singles, tiles;
  for (const auto& s : layout.sequences) {
    const auto table_start = static_cast<int32_t>(tables.size());
    tables.insert(tables.end(), s.blocks.begin(), s.blocks.end());
    for (int64_t i = 0; i < s.count; ++i) {
      table_of_token.push_back(table_start);
      if (s.count < cuda::kTiledFrom) singles.push_back(static_cast<int32_t>(s.offset + i));
    }
    for (int64_t i = 0; s.count >= cuda::kTiledFrom && i < s.count; i += cuda::kQueryTile) {
      tiles.push_back(static_cast<int32_t>(s.offset + i));
      tiles.push_back(static_cast<int32_t>(std::min(cuda::kQueryTile, s.count - i)));
    }
  }
  Staging staging;
  const size_t at_ids = staging.add(layout.token_ids.data(), layout.token_ids.size());
  const size_t at_positions = staging.add(positions.data(), positions.size());
  const size_t at_owner = staging.add(table_of_token.data(), table_of_token.size());
  const size_t at_singles = staging.add(singles.data(), singles.size());
  const size_t at_tiles = staging.add(tiles.data(), tiles.size());
  const size_t at_cos = staging.add(layout.rope.cos.data(), layout.rope.cos.size());
  const size_t at_sin = staging.add(layout.rope.sin.data(), layout.rope.sin.size());
  const size_t at_local_cos = staging.add(layout.local_rope.cos.data(), layout.local_rope.cos.size());
  const size_t at_local_sin = staging.add(layout.local_rope.sin.data(), layout.local_rope.sin.size());
  const size_t at_tables = staging.add(tables.data(), tables.size());
  if (step_buffer_.bytes() < staging.bytes().size()) {
    graphs_.clear();  // they read the old buffer
    step_buffer_ = allocate(std::max<size_t>(staging.bytes().size() * 2, size_t{1} << 20));
  }
  upload(staging.bytes().data(), staging.bytes().size(), step_buffer_.data());
  const auto* base = static_cast<const uint8_t*>(step_buffer_.data());
  const auto array = [base](size_t offset) { return reinterpret_cast<const int32_t*>(base + offset); };
  const auto floats = [base](size_t offset) { return reinterpret_cast<const float*>(base + offset); };
  step_ = {};
  step_.tokens = layout.tokens;
  step_.token_ids = array(at_ids);
  step_.positions = array(at_positions);
  step_.table_of_token = array(at_owner);
  step_.block_tables = array(at_tables);
  step_.single_tokens = array(at_singles);
  step_.singles = static_cast<int64_t>(singles.size());
  longest_single_ = 0;
  for (const int32_t t : singles) longest_single_ = std::max<int64_t>(longest_single_, positions[t] + 1);
  reserve_arrivals(step_.singles * attention_kv_heads_);
  step_.tiles = array(at_tiles);
  step_.tile_count = static_cast<int64_t>(tiles.size() / 2);
  step_.one_token_slices = std::all_of(layout.sequences.begin(), layout.sequences.end(),
                                       [](const StepLayout::Sequence& s) { return s.count == 1; });
  rope_ = {floats(at_cos), floats(at_sin), layout.rope.rotary_dim, false};
  local_rope_ = {floats(at_local_cos), floats(at_local_sin), layout.local_rope.rotary_dim, false};
}

// Room for `count` split attention counters. Recordings read the old ones: they go.
void CudaBackend::reserve_arrivals(int64_t count) {
  const size_t bytes = static_cast<size_t>(count) * sizeof(int);
  if (attention_arrivals_.bytes() >= bytes) return;
  graphs_.clear();
  attention_arrivals_ = allocate(std::max(bytes, 2 * attention_arrivals_.bytes()));
  zero(attention_arrivals_.data(), attention_arrivals_.bytes());
}

// A decode step's kernels, launched one by one from the host, take longer to launch than to run
// on a small batch: the first step of each key is recorded as a CUDA graph, and later ones replay
// it in one launch, leaving their picks or logits at a fixed place to copy to the host. Steps that
// copy to or from the host midway (MoE routing, say) come without a replay key.
void CudaBackend::run_step(const Step& step, const StepWork& work, int64_t rows, int64_t cols, StepOutput out) {
  const uint64_t replay_key = step.replay_key();
  if (!record_steps_ || replay_key == 0 || rows > kMaxRecordedRows || attention_kv_heads_ == 0) {
    return Backend::run_step(step, work, rows, cols, out);
  }
  // A pick under a mask happens after the replay, once the host has the mask: its recording leaves
  // the logits, as one for the logits themselves does.
  const bool picks_inside = out.picks && !out.allowed;
  // Sized for the largest recorded step, so that they never move.
  if (!picks_.data()) picks_ = allocate(kMaxRecordedRows * sizeof(int32_t));
  if (!picks_inside && logits_.bytes() < static_cast<size_t>(kMaxRecordedRows * cols) * sizeof(float)) {
    graphs_.clear();
    logits_ = allocate(static_cast<size_t>(kMaxRecordedRows * cols) * sizeof(float));
  }
  // Argmax and logits recordings of one step differ.
  const uint64_t key = replay_key * 2 + (picks_inside ? 1 : 0);
  cudaGraphExec_t graph = graphs_.find(key);
  if (!graph) {
    graph = record(work, [&](const float* logits) {
      if (picks_inside) {
        cuda::argmax_rows(logits, rows, cols, nullptr, static_cast<int32_t*>(picks_.data()), stream_);
        launched("argmax_rows");
      } else {
        copy(logits, static_cast<size_t>(rows * cols) * sizeof(float), logits_.data());
      }
    });
    graphs_.add(key, graph);
  }
  check(cudaGraphLaunch(graph, stream_), "replaying a decode step");
  if (picks_inside) {
    download(picks_.data(), static_cast<size_t>(rows) * sizeof(int32_t), out.picks);
  } else if (out.picks) {
    argmax_rows(logits_.floats(), rows, cols, out.allowed(), out.picks);
  } else {
    download(logits_.data(), static_cast<size_t>(rows * cols) * sizeof(float), out.logits);
  }
}

// The work's kernels as an executable graph.
cudaGraphExec_t CudaBackend::record(const StepWork& work, const LogitsUser& use) {
  check(cudaStreamBeginCapture(stream_, cudaStreamCaptureModeThreadLocal), "recording a decode step");
  recording_ = true;
  const auto abandon = [this] {
    recording_ = false;
    cudaGraph_t partial = nullptr;
    cudaStreamEndCapture(stream_, &partial);
    if (partial) cudaGraphDestroy(partial);
    cudaGetLastError();  // the abandoned capture's error, if any
  };
  try {
    work(use);
  } catch (...) {
    abandon();
    throw;
  }
  recording_ = false;
  cudaGraph_t graph = nullptr;
  check(cudaStreamEndCapture(stream_, &graph), "recording a decode step");
  cudaGraphExec_t exec = nullptr;
  const cudaError_t status = cudaGraphInstantiate(&exec, graph, 0);
  cudaGraphDestroy(graph);
  check(status, "instantiating a recorded decode step");
  return exec;
}

// Decode-sized batches go through the matvec kernel, larger ones through cuBLAS, whose summation
// order varies with the batch size. Batch-invariant, half-precision weights go through the
// fixed-order tensor-core kernel at every batch size instead, so that a row's result never depends
// on what else is in the step (float32 weights only serve the test fixtures, which run alone). All
// read the activations rounded to the weight type, with float32 accumulation.
void CudaBackend::linear(const float* x, int64_t rows, const Linear& layer, float* out) {
  if (rows == 0) return;
  const auto& [w, bias] = weights_.at(layer);
  if (takes_matvec(w, rows)) {
    const cuda::MatvecTarget target{w, bias, out};
    timed("linear (matvec)", [&] { cuda::matvec(x, rows, &target, 1, stream_); });
    return;
  }
  const Buffer converted = converted_input(x, rows, w);
  product(converted.data() ? converted.data() : x, rows, layer, out);
}

// x rounded to w's half type for the tensor cores (cuBLAS and the fixed-order kernel), or no
// buffer when w is float32 and reads x as it is.
Buffer CudaBackend::converted_input(const float* x, int64_t rows, const cuda::Matrix& w) {
  const cuda::WeightType type = cuda::product_type(w.type);
  if (type == cuda::WeightType::F32) return {};
  Buffer converted = allocate(static_cast<size_t>(rows * w.cols) * 2);
  timed("convert", [&] { cuda::convert(x, rows * w.cols, type, converted.data(), stream_); });
  return converted;
}

// out = input * W^T (+ bias) for an input already in w's product type, beyond matvec's batch
// sizes. Quantized blocks are widened to bf16 for the product, into memory it then frees.
void CudaBackend::product(const void* input, int64_t rows, const Linear& layer, float* out) {
  auto [w, bias] = weights_.at(layer);
  Buffer widened;
  if (cuda::is_quantized(w.type)) {
    widened = allocate(static_cast<size_t>(w.rows * w.cols) * 2);
    timed("dequantize", [&] { cuda::dequantize(w, widened.data(), stream_); });
    w = {widened.data(), cuda::WeightType::BF16, w.rows, w.cols};
  }
  if (takes_tensor_cores(w)) {
    timed("linear (tensor cores)", [&] { cuda::tensor_core_linear(input, rows, w, bias, out, stream_); });
    return;
  }
  const auto timer = profile_.time("linear (cuBLAS)");
  const float alpha = 1.0f, beta = 0.0f;
  const cudaDataType type = data_type(w.type);
  // Row-major out[rows, features] is column-major [features, rows] = W (column-major [cols, features])^T * x.
  check(cublasGemmEx(cublas_, CUBLAS_OP_T, CUBLAS_OP_N, static_cast<int>(w.rows), static_cast<int>(rows),
                     static_cast<int>(w.cols), &alpha, w.data, type, static_cast<int>(w.cols), input, type,
                     static_cast<int>(w.cols), &beta, out, CUDA_R_32F, static_cast<int>(w.rows),
                     w.type == cuda::WeightType::F32 ? CUBLAS_COMPUTE_32F_PEDANTIC : CUBLAS_COMPUTE_32F,
                     CUBLAS_GEMM_DEFAULT),
        layer.weight.name.c_str());
  if (bias) {
    cuda::add_bias(out, bias, rows, w.rows, stream_);
    launched("add_bias");
  }
}

// Decode products of one input go in one matvec launch when their matrices match in type and width.
void CudaBackend::linears(const float* x, int64_t rows, std::span<const Linear* const> layers,
                          std::span<float* const> outs) {
  std::vector<cuda::MatvecTarget> targets;
  for (size_t i = 0; i < layers.size(); ++i) {
    const auto& [w, bias] = weights_.at(*layers[i]);
    targets.push_back({w, bias, outs[i]});
  }
  // Matrices of one product type and width read the same input, rounded to that type; of one
  // weight type, they go in one matvec launch.
  const auto all = [&](auto same) {
    return std::all_of(targets.begin(), targets.end(), [&](const cuda::MatvecTarget& t) {
      return same(t.w, targets[0].w) && t.w.cols == targets[0].w.cols;
    });
  };
  const bool same_input = all([](const cuda::Matrix& a, const cuda::Matrix& b) {
    return cuda::product_type(a.type) == cuda::product_type(b.type);
  });
  const bool same_type = all([](const cuda::Matrix& a, const cuda::Matrix& b) { return a.type == b.type; });
  if (rows > 0 && same_input && !takes_matvec(targets[0].w, rows)) {  // one conversion for every product
    const Buffer converted = converted_input(x, rows, targets[0].w);
    for (size_t i = 0; i < layers.size(); ++i)
      product(converted.data() ? converted.data() : x, rows, *layers[i], outs[i]);
    return;
  }
  const auto fits = [&](const cuda::MatvecTarget& t) { return takes_matvec(t.w, rows); };
  if (!same_type || targets.size() > cuda::kMaxMatvecTargets || !std::all_of(targets.begin(), targets.end(), fits)) {
    return Backend::linears(x, rows, layers, outs);
  }
  timed("linear (matvec)", [&] { cuda::matvec(x, rows, targets.data(), static_cast<int>(targets.size()), stream_); });
}

// Decode-sized steps take gate and up in one matvec launch that also applies the activation.
void CudaBackend::gated_linear(const float* x, int64_t rows, const Linear& gate, const Linear& up, Activation act,
                               float* out) {
  const auto& [g, gate_bias] = weights_.at(gate);
  const auto& [u, up_bias] = weights_.at(up);
  if (rows == 0 || g.type != u.type || g.rows != u.rows || g.cols != u.cols || !takes_matvec(g, rows)) {
    return Backend::gated_linear(x, rows, gate, up, act, out);
  }
  timed("gated linear (matvec)",
        [&] { cuda::gated_matvec(x, rows, g, gate_bias, u, up_bias, act_type(act), out, stream_); });
}

void CudaBackend::attend(int64_t layer, const float* q, const float* k, const float* v, const AttentionParams& params,
                         const cuda::Rotation& rotation, KvCache& cache, float* out) {
  if (cache.dtype() == KvDType::Q8_0)
    fail("the cuda backend keeps keys and values in f32, bf16 or fp8; --kv-cache-dtype q8_0 is CPU-only");
  if (params.head_dim > 256) fail("the cuda backend's attention handles head_dim up to 256, not {}", params.head_dim);
  if (cache.num_blocks() * cache.block_size() >= (int64_t{1} << 31)) fail("a KV cache of 2^31 positions or more");
  const auto type = cache.dtype() == KvDType::BF16  ? cuda::CacheType::BF16
                    : cache.dtype() == KvDType::FP8 ? cuda::CacheType::FP8
                                                    : cuda::CacheType::F32;
  const int64_t group = params.heads / params.kv_heads, most = cuda::decode_max_query_group(params.head_dim, type);
  if (group > most) {
    fail(
        "the cuda backend's attention handles up to {} query heads per KV head at head_dim {} with a {} cache, "
        "not {}",
        most, params.head_dim, kv_dtype_name(cache.dtype()), group);
  }
  const auto timer = profile_.time("attention");
  cuda::StepArrays step = step_;
  step.block_size = cache.block_size();
  const cuda::AttentionShape shape{params.heads, params.kv_heads, params.head_dim,
                                   params.scale, params.softcap,  params.window};
  const cuda::DecodeSplit split = batch_invariant_ ? cuda::DecodeSplit{}
                                                   : cuda::decode_split(step.singles, params.kv_heads, longest_single_,
                                                                        kMaxRecordedRows, multiprocessors_);
  Buffer partials;
  if (split.partitions > 1) {
    partials = floats(step.singles * params.heads * split.partitions *
                      (params.head_dim + 2));  // [singles, heads, partitions, head_dim + 2]
  }
  attention_kv_heads_ = std::max(attention_kv_heads_, params.kv_heads);
  // A recorded step comes after one that ran every layer: start_step sized the counters for it.
  if (!recording_) reserve_arrivals(step.singles * params.kv_heads);
  const cuda::CacheRows<void> rows{cache.keys(layer), cache.values(layer), cache.key_scales(layer),
                                   cache.value_scales(layer)};
  cuda::attention(step, shape, q, k, v, rotation, type, rows, out, split, partials.floats(),
                  static_cast<int*>(attention_arrivals_.data()), tensor_core_attention_, stream_);
  launched("attention");
}

}  // namespace

std::unique_ptr<Backend> make_cuda_backend(const WeightSet& weights, const BackendOptions& options) {
  int devices = 0;
  const cudaError_t status = cudaGetDeviceCount(&devices);
  if (status != cudaSuccess || devices == 0) {
    fail("--device cuda: no CUDA GPU is usable here ({})",
         status != cudaSuccess ? cudaGetErrorString(status) : "no devices");
  }
  if (options.gpu < 0 || options.gpu >= devices) {
    fail("--device cuda: GPU {} was asked for (a tensor-parallel rank's), but {} GPU{} usable here", options.gpu,
         devices, devices == 1 ? " is" : "s are");
  }
  check(cudaSetDevice(options.gpu), "selecting the GPU");
  return std::make_unique<CudaBackend>(weights, options);
}

CudaPlacement cuda_placement(Backend& backend) {
  auto* cuda = dynamic_cast<CudaBackend*>(&backend);
  if (!cuda) fail("the {} backend is not a CUDA backend", backend.name());
  return {cuda->gpu(), cuda->stream()};
}

}  // namespace nanoserve

// The plugin's entry point (backend/cuda_plugin.h): the caller owns the backend.
extern "C" nanoserve::Backend* nanoserve_make_cuda_backend(const nanoserve::WeightSet& weights,
                                                           const nanoserve::BackendOptions& options) {
  return nanoserve::make_cuda_backend(weights, options).release();
}
