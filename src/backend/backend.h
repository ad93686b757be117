// The operations the forward pass runs, on memory the backend owns: host memory for the CPU
// backend, device memory for CUDA. model/transformer.cpp calls only these, so one forward pass
// serves every backend. Activation arguments are float arrays in the backend's memory; weights are
// Linears and Norms of the WeightSet the backend was made with, which it finds by their handles.
//
// A backend runs one forward step at a time (one Transformer uses it): begin_step hands it what
// every layer reads (positions, RoPE tables, each sequence's block table) in a Step, which embed,
// rope and attention then read until the Step runs its work and goes.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "backend/ops.h"
#include "backend/rope_table.h"
#include "backend/weight_set.h"

namespace nanoserve {

class Backend;
class KvCache;
class Step;

// Which tokens each row of a step may pick, in host memory: rows of allowed_words(vocab) words, bit
// t % 64 of word t / 64 set where token t is allowed. A function, so that it is asked for only when
// needed (an empty one: every token).
using AllowedTokens = std::function<std::span<const uint64_t>()>;
constexpr int64_t allowed_words(int64_t vocab) { return (vocab + 63) / 64; }

// Bytes of a backend's memory, given back to it when the buffer goes.
class Buffer {
 public:
  Buffer() = default;
  Buffer(Backend* owner, void* data, size_t bytes) : owner_(owner), data_(data), bytes_(bytes) {}
  Buffer(Buffer&& other) noexcept { *this = std::move(other); }
  Buffer& operator=(Buffer&& other) noexcept;
  Buffer(const Buffer&) = delete;
  Buffer& operator=(const Buffer&) = delete;
  ~Buffer();

  void* data() const { return data_; }
  float* floats() const { return static_cast<float*>(data_); }
  size_t bytes() const { return bytes_; }

 private:
  Backend* owner_ = nullptr;
  void* data_ = nullptr;
  size_t bytes_ = 0;
};

// What one forward step runs over, computed on the host once and read by every layer.
struct StepLayout {
  struct Sequence {
    int64_t offset = 0, count = 0, first_pos = 0;  // rows [offset, offset + count) at positions first_pos..
    std::span<const int32_t> blocks;               // block table covering [0, first_pos + count)
  };
  int64_t tokens = 0;
  std::vector<int32_t> token_ids;  // [tokens], rows of the embedding (the caller checks), or -1 (a zero row)
  std::vector<int64_t> positions;  // [tokens]
  std::vector<Sequence> sequences;
  RopeTable rope, local_rope;  // [tokens, rotary_dim / 2] cos and sin; empty when unused
};

class Backend {
 public:
  virtual ~Backend() = default;
  virtual std::string name() const = 0;      // "cpu", "cuda"
  virtual std::string describe() const = 0;  // for start-up messages, e.g. the GPU's name

  // Memory. allocate returns uninitialized bytes; copies may run asynchronously with the kernels
  // but download returns once the bytes are on the host.
  virtual Buffer allocate(size_t bytes) = 0;
  Buffer floats(int64_t count) { return allocate(static_cast<size_t>(count) * sizeof(float)); }
  virtual void upload(const void* host, size_t bytes, void* dst) = 0;
  virtual void download(const void* src, size_t bytes, void* host) = 0;
  virtual void copy(const void* src, size_t bytes, void* dst) = 0;
  // dst[r, 0..cols) = src[r, 0..cols) for r < rows, whose rows are src_stride and dst_stride
  // floats apart (a block of a wider matrix).
  virtual void copy_strided(const float* src, int64_t src_stride, float* dst, int64_t dst_stride, int64_t rows,
                            int64_t cols) = 0;
  virtual void zero(void* dst, size_t bytes) = 0;
  // Bytes a KV pool may take: `fraction` of the device's memory less what is in use (0 when the
  // backend has no such budget and the caller's own setting applies).
  virtual int64_t kv_budget(double fraction) const = 0;
  // Makes the calling thread's current device this backend's (a tensor-parallel rank's thread
  // calls it before the rank's work; the CUDA runtime keeps a current GPU per thread).
  virtual void bind_thread() {}

  // Starts a forward step over `layout`, which the Step owns. A nonzero replay_key is the caller's
  // promise that the step's work copies nothing to or from the host and runs the operations, on
  // the buffers and shapes, of every earlier step with that key, only the step's own values (ids,
  // positions, block tables) changing: a backend may record the work the first time and replay the
  // recording after. Zero: the work just runs (prefill, MoE routing on the host, a sink).
  Step begin_step(StepLayout layout, uint64_t replay_key);

  // out[t] = the row of the token embedding for the step's token t (Tokens), or of the learned
  // position table for its position (Positions): [step tokens, hidden]. The caller has checked that
  // the ids are rows of the table, or -1: a zero row (the token of a vocabulary-parallel rank's
  // embedding that another rank holds).
  enum class Ids { Tokens, Positions };
  virtual void embed(Ids ids, float* out) = 0;
  virtual void norm(NormKind kind, const float* x, const Norm& params, int64_t rows, int64_t cols, double eps,
                    float* out) = 0;
  // x += y, then out = norm(x): a residual add and the norm after it, in one pass where the backend
  // fuses them. out is apart from x and y.
  virtual void add_norm(NormKind kind, float* x, const float* y, const Norm& params, int64_t rows, int64_t cols,
                        double eps, float* out);
  // out[rows, out_features] = x[rows, in_features] * W^T + bias.
  virtual void linear(const float* x, int64_t rows, const Linear& layer, float* out) = 0;
  // linear for each of layers that read the same x (q, k and v; gate and up), into outs: one
  // pass where the backend fuses them.
  virtual void linears(const float* x, int64_t rows, std::span<const Linear* const> layers,
                       std::span<float* const> outs);
  // out[rows, gate out_features] = act(x * gate^T + bias) * (x * up^T + bias): a gated MLP's first
  // half, in one pass where the backend fuses it.
  virtual void gated_linear(const float* x, int64_t rows, const Linear& gate, const Linear& up, Activation act,
                            float* out);
  virtual void act_mul(Activation act, float* gate, const float* up, int64_t n) = 0;
  virtual void activate(Activation act, float* x, int64_t n) = 0;
  virtual void add(float* x, const float* y, int64_t n) = 0;
  virtual void scale(float* x, float factor, int64_t n) = 0;
  virtual void softcap(float* x, float cap, int64_t n) = 0;
  virtual void clamp(float* x, float limit, int64_t n) = 0;
  // Rotates q [step tokens, heads * head_dim] and k [step tokens, kv_heads * head_dim] by the step's
  // RoPE table (or its local one).
  virtual void rope(float* q, int64_t heads, float* k, int64_t kv_heads, int64_t head_dim, bool local,
                    RopePairs pairs) = 0;
  // Stores the step's keys and values k, v [step tokens, kv_heads * head_dim] in the cache's layer,
  // then attends each query row of q [step tokens, heads * head_dim] causally over its sequence.
  virtual void attention(int64_t layer, const float* q, const float* k, const float* v, const AttentionParams& params,
                         KvCache& cache, float* out) = 0;
  // rope (by the step's table, or its local one) then attention, in one pass where the backend
  // fuses them; q and k may then be left unrotated.
  virtual void rope_attention(int64_t layer, float* q, float* k, const float* v, const AttentionParams& params,
                              bool local, RopePairs pairs, KvCache& cache, float* out);
  // out[r] (host memory) = the column of the largest value in row r of x [rows, cols], the lowest
  // among equals: greedy decoding without copying logits to the host. With `allowed` (host memory,
  // [rows, allowed_words(cols)]), only the columns whose bit is set compete, as if the others
  // were -infinity: grammar-constrained greedy decoding. A row with no bit set gets -1.
  virtual void argmax_rows(const float* x, int64_t rows, int64_t cols, std::span<const uint64_t> allowed,
                           int32_t* out) = 0;

  // A forward step's device work after begin_step: computes the logits [rows, cols] and hands them
  // to `use` while they live. With a replay key it copies nothing to or from the host.
  using LogitsUser = std::function<void(const float* logits)>;
  using StepWork = std::function<void(const LogitsUser& use)>;
  // Where a step's results go, on the host: each logits row's argmax (as argmax_rows), or the
  // logits themselves [rows, cols].
  struct StepOutput {
    int32_t* picks = nullptr;
    float* logits = nullptr;
    // With picks: each row's allowed tokens, asked for once the step's device work is under way so
    // that the host computes them (grammar masks) meanwhile.
    AllowedTokens allowed = {};
  };
  // dst[i] = src[rows[i]], rows of `cols` floats.
  virtual void gather_rows(const float* src, std::span<const int64_t> rows, int64_t cols, float* dst) = 0;
  // dst[rows[i]] += weights[i] * src[i]; the rows are distinct.
  virtual void scatter_add_rows(const float* src, std::span<const int64_t> rows, std::span<const float> weights,
                                int64_t cols, float* dst) = 0;

 protected:
  friend class Buffer;
  friend class Step;
  virtual void release(void* data, size_t bytes) = 0;  // a Buffer's, with its size
  // The step's layout, which stays where it is until end_step.
  virtual void start_step(const StepLayout& layout) = 0;
  virtual void end_step() {}
  // Step::run: runs `work`, whose logits are [rows, cols], into `out`, or replays its recording
  // (begin_step). By default the work just runs.
  virtual void run_step(const Step& step, const StepWork& work, int64_t rows, int64_t cols, StepOutput out);
};

// One forward step on a backend, from begin_step: it owns what every layer reads and the key it
// may be replayed under, and ends the backend's step when it goes. The layers' ops run inside
// `work`, which run hands to the backend.
class Step {
 public:
  Step(Step&& other) noexcept;
  Step& operator=(Step&&) = delete;
  Step(const Step&) = delete;
  Step& operator=(const Step&) = delete;
  ~Step();

  const StepLayout& layout() const { return *layout_; }
  uint64_t replay_key() const { return replay_key_; }
  void run(const Backend::StepWork& work, int64_t rows, int64_t cols, Backend::StepOutput out) const {
    backend_->run_step(*this, work, rows, cols, std::move(out));
  }

 private:
  friend class Backend;
  Step(Backend& backend, StepLayout layout, uint64_t replay_key);
  Backend* backend_;
  std::unique_ptr<const StepLayout> layout_;  // where the backend reads it, however the Step moves
  uint64_t replay_key_;
};

struct BackendOptions {
  // Every row's result the same bits whatever else is in the step, so a request's tokens do not
  // depend on the batch it ran in. The CPU backend always is; the CUDA backend then multiplies
  // half-precision weights with a fixed-order tensor-core kernel instead of matvec and cuBLAS,
  // at a cost in prefill speed.
  bool batch_invariant = false;
  // CUDA: record decode steps as CUDA graphs and replay them (false: launch every kernel each step).
  bool cuda_graphs = true;
  // CUDA: which GPU holds the weights (a tensor-parallel rank's).
  int gpu = 0;
};

// "cpu" or "cuda"; a CUDA backend copies the weights to the GPU (options.gpu) now. Throws Error for
// an unknown name, a build without CUDA, no such GPU, or too little GPU memory.
std::unique_ptr<Backend> make_backend(const std::string& device, const WeightSet& weights,
                                      const BackendOptions& options = {});

}  // namespace nanoserve
