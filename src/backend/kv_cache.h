// Paged key/value storage: fixed-size blocks of positions, shared by all sequences. A sequence
// owns a block table (block ids in position order); position p lives in block table[p / block_size]
// at slot p % block_size. Which sequence holds which block is the engine's business
// (engine/block_manager.h); this class only stores rows, as float32, bfloat16 (half the memory,
// each value rounded once as stored), FP8 E4M3 with a float scale per row and head (a head's largest
// magnitude maps to 448, fp8's largest: 27% of the memory at head_dim 64) or Q8_0 blocks (int8 with
// a float16 scale per 32 values: 27% of the memory; CPU only), in the memory of the backend that
// attends over them (host or GPU).
#pragma once

#include <cstdint>
#include <span>
#include <string_view>
#include <vector>

#include "backend/backend.h"
#include "backend/kv_shape.h"

namespace nanoserve {

enum class KvDType { F32, BF16, FP8, Q8_0 };

// "f32", "bf16", "fp8" (or "fp8_e4m3") or "q8_0"; false for other names.
bool parse_kv_dtype(std::string_view name, KvDType* out);
std::string_view kv_dtype_name(KvDType dtype);

class KvCache {
 public:
  // Q8_0 needs head_dim to be a multiple of 32 (blocks never span heads); throws Error otherwise.
  // It binds the backend's device to the calling thread (Backend::bind_thread) wherever it
  // touches its memory: made, copied within and freed from any thread, as a tensor-parallel
  // rank's cache on its rank's GPU is.
  KvCache(const KvShape& shape, int64_t num_blocks, int64_t block_size, KvDType dtype, Backend& backend);
  ~KvCache();
  KvCache(KvCache&&) = default;
  KvCache& operator=(KvCache&&) = default;

  // Bytes one block takes over all layers, keys and values.
  static int64_t bytes_per_block(const KvShape& shape, int64_t block_size, KvDType dtype = KvDType::F32);

  int64_t num_blocks() const { return num_blocks_; }
  int64_t block_size() const { return block_size_; }
  int64_t row_width() const { return row_width_; }  // kv_heads * head_dim
  KvDType dtype() const { return dtype_; }
  int64_t row_bytes() const { return row_bytes_; }
  Backend& backend() const { return *backend_; }
  // Distinct for every cache this process creates (a cache's identity in recorded steps).
  uint64_t id() const { return id_; }
  // A layer's rows in the backend's memory: [num_blocks * block_size, row_bytes].
  void* keys(int64_t layer) const { return keys_[static_cast<size_t>(layer)].data(); }
  void* values(int64_t layer) const { return values_[static_cast<size_t>(layer)].data(); }
  // FP8 only (nullptr otherwise): a layer's scales, [num_blocks * block_size, kv_heads]; element d of
  // a row's head h stands for its fp8 value times scales[row * kv_heads + h].
  float* key_scales(int64_t layer) const { return scales_of(keys_, layer); }
  float* value_scales(int64_t layer) const { return scales_of(values_, layer); }

  // Host-memory caches only (the CPU backend's). Stores one position's key and value rows [row_width].
  void write(int64_t layer, int32_t block, int64_t slot, const float* key, const float* value);
  // One position's key or value row as float: a pointer into the cache (F32), or `scratch`
  // [row_width], which it fills (BF16, Q8_0).
  const float* key(int64_t layer, int32_t block, int64_t slot, float* scratch) const;
  const float* value(int64_t layer, int32_t block, int64_t slot, float* scratch) const;
  void copy_block(int32_t from, int32_t to);  // every layer, keys and values

 private:
  int64_t offset(int32_t block, int64_t slot) const;  // bytes into a layer's rows
  float* scales_of(const std::vector<Buffer>& rows, int64_t layer) const;
  void write_fp8(const float* x, uint8_t* row, float* scales) const;  // x [row_width]
  const float* read(const std::vector<Buffer>& rows, int64_t layer, int32_t block, int64_t slot, float* scratch) const;

  int64_t num_blocks_, block_size_, row_width_, row_bytes_, kv_heads_, head_dim_;
  int64_t scales_at_;  // FP8: bytes into a layer's buffer where its scales start, after the rows
  KvDType dtype_;
  Backend* backend_;
  uint64_t id_;
  std::vector<Buffer> keys_, values_;  // [layers][num_blocks * block_size * row_bytes (+ FP8's scales)]
};

// One sequence in a private KvCache with blocks 0, 1, 2, ... in order: what the CLI's one-shot
// commands and the tests of the forward pass use.
class SequenceCache {
 public:
  SequenceCache(const KvShape& shape, int64_t capacity, int64_t block_size, KvDType dtype, Backend& backend);

  int64_t length() const { return length_; }  // positions filled
  int64_t capacity() const { return static_cast<int64_t>(blocks_.size()) * cache_.block_size(); }
  void clear() { length_ = 0; }
  void advance(int64_t tokens) { length_ += tokens; }
  KvCache& cache() { return cache_; }
  std::span<const int32_t> blocks() const { return blocks_; }

 private:
  KvCache cache_;
  std::vector<int32_t> blocks_;
  int64_t length_ = 0;
};

}  // namespace nanoserve
