#include "backend/kv_cache.h"

#include <algorithm>
#include <array>
#include <atomic>
#include <cmath>
#include <cstring>
#include <numeric>

#include "formats/dtype.h"
#include "formats/quant.h"
#include "util/error.h"

namespace nanoserve {

namespace {
// The bytes of a row's elements (FP8's scales are kept apart, after all the rows).
int64_t bytes_per_row(const KvShape& c, KvDType dtype) {
  const int64_t width = c.row_width();
  switch (dtype) {
    case KvDType::F32: return width * static_cast<int64_t>(sizeof(float));
    case KvDType::BF16: return width * 2;
    case KvDType::FP8: return width;
    case KvDType::Q8_0: break;
  }
  if (c.head_dim % 32 != 0) fail("a q8_0 KV cache needs head_dim to be a multiple of 32 (this model: {})", c.head_dim);
  return dtype_bytes(DType::Q8_0, width);
}

int64_t scale_bytes_per_row(const KvShape& c, KvDType dtype) {
  return dtype == KvDType::FP8 ? c.kv_heads * static_cast<int64_t>(sizeof(float)) : 0;
}

int64_t round_up(int64_t n, int64_t to) { return (n + to - 1) / to * to; }

// A head's scale: its largest magnitude maps to fp8's largest value, 448. The CUDA kernels compute
// it the same way (backend/cuda/common.cuh, fp8_scale).
float fp8_scale(const float* x, int64_t n) {
  float largest = 0;
  for (int64_t i = 0; i < n; ++i) largest = std::max(largest, std::fabs(x[i]));
  return largest > 0 ? largest / 448.0f : 1.0f;
}

uint64_t next_cache_id() {
  static std::atomic<uint64_t> next{1};
  return next++;
}
}  // namespace

bool parse_kv_dtype(std::string_view name, KvDType* out) {
  if (name == "f32")
    *out = KvDType::F32;
  else if (name == "bf16")
    *out = KvDType::BF16;
  else if (name == "fp8" || name == "fp8_e4m3")
    *out = KvDType::FP8;
  else if (name == "q8_0")
    *out = KvDType::Q8_0;
  else
    return false;
  return true;
}

std::string_view kv_dtype_name(KvDType dtype) {
  switch (dtype) {
    case KvDType::F32: return "f32";
    case KvDType::BF16: return "bf16";
    case KvDType::FP8: return "fp8";
    case KvDType::Q8_0: return "q8_0";
  }
  return "?";
}

KvCache::KvCache(const KvShape& c, int64_t num_blocks, int64_t block_size, KvDType dtype, Backend& backend)
    : num_blocks_(num_blocks),
      block_size_(block_size),
      row_width_(c.row_width()),
      row_bytes_(bytes_per_row(c, dtype)),
      kv_heads_(c.kv_heads),
      head_dim_(c.head_dim),
      scales_at_(round_up(num_blocks * block_size * row_bytes_, 16)),
      dtype_(dtype),
      backend_(&backend),
      id_(next_cache_id()) {
  backend.bind_thread();
  const auto n = static_cast<size_t>(scales_at_ + num_blocks * block_size * scale_bytes_per_row(c, dtype));
  // Cleared now, so that the whole pool is taken at start rather than page by page under load.
  for (int64_t l = 0; l < c.layers; ++l) {
    for (auto* rows : {&keys_, &values_}) {
      rows->push_back(backend.allocate(n));
      backend.zero(rows->back().data(), n);
    }
  }
}

int64_t KvCache::bytes_per_block(const KvShape& c, int64_t block_size, KvDType dtype) {
  return 2 * c.layers * block_size * (bytes_per_row(c, dtype) + scale_bytes_per_row(c, dtype));
}

int64_t KvCache::offset(int32_t block, int64_t slot) const { return (block * block_size_ + slot) * row_bytes_; }

float* KvCache::scales_of(const std::vector<Buffer>& rows, int64_t layer) const {
  if (dtype_ != KvDType::FP8) return nullptr;
  return reinterpret_cast<float*>(static_cast<uint8_t*>(rows[static_cast<size_t>(layer)].data()) + scales_at_);
}

void KvCache::write_fp8(const float* x, uint8_t* row, float* scales) const {
  for (int64_t h = 0; h < kv_heads_; ++h) {
    const float* head = x + h * head_dim_;
    const float scale = scales[h] = fp8_scale(head, head_dim_);
    for (int64_t d = 0; d < head_dim_; ++d) row[h * head_dim_ + d] = float_to_fp8_e4m3(head[d] / scale);
  }
}

void KvCache::write(int64_t layer, int32_t block, int64_t slot, const float* key, const float* value) {
  uint8_t* k = static_cast<uint8_t*>(keys(layer)) + offset(block, slot);
  uint8_t* v = static_cast<uint8_t*>(values(layer)) + offset(block, slot);
  if (dtype_ == KvDType::F32) {
    std::memcpy(k, key, static_cast<size_t>(row_bytes_));
    std::memcpy(v, value, static_cast<size_t>(row_bytes_));
  } else if (dtype_ == KvDType::BF16) {
    for (int64_t i = 0; i < row_width_; ++i) {
      const uint16_t kb = float_to_bf16(key[i]), vb = float_to_bf16(value[i]);
      std::memcpy(k + 2 * i, &kb, 2);
      std::memcpy(v + 2 * i, &vb, 2);
    }
  } else if (dtype_ == KvDType::FP8) {
    const int64_t row = block * block_size_ + slot;
    write_fp8(key, k, key_scales(layer) + row * kv_heads_);
    write_fp8(value, v, value_scales(layer) + row * kv_heads_);
  } else {
    quantize_row_q8_0(key, k, row_width_);
    quantize_row_q8_0(value, v, row_width_);
  }
}

const float* KvCache::read(const std::vector<Buffer>& rows, int64_t layer, int32_t block, int64_t slot,
                           float* scratch) const {
  const uint8_t* r = static_cast<const uint8_t*>(rows[static_cast<size_t>(layer)].data()) + offset(block, slot);
  if (dtype_ == KvDType::F32) return reinterpret_cast<const float*>(r);
  if (dtype_ == KvDType::FP8) {
    // Every code's value, looked up: decoding each in turn made the demo's perplexity run 35% slower
    // than with bf16, looking them up 15-22%.
    static const std::array<float, 256> decoded = [] {
      std::array<float, 256> values{};
      for (int code = 0; code < 256; ++code)
        values[static_cast<size_t>(code)] = fp8_e4m3_to_float(static_cast<uint8_t>(code));
      return values;
    }();
    const float* scales = scales_of(rows, layer) + (block * block_size_ + slot) * kv_heads_;
    for (int64_t h = 0; h < kv_heads_; ++h) {
      for (int64_t d = h * head_dim_; d < (h + 1) * head_dim_; ++d) scratch[d] = decoded[r[d]] * scales[h];
    }
    return scratch;
  }
  dequantize_row(dtype_ == KvDType::BF16 ? GgmlType::BF16 : GgmlType::Q8_0, r, scratch, row_width_);
  return scratch;
}

const float* KvCache::key(int64_t layer, int32_t block, int64_t slot, float* scratch) const {
  return read(keys_, layer, block, slot, scratch);
}

const float* KvCache::value(int64_t layer, int32_t block, int64_t slot, float* scratch) const {
  return read(values_, layer, block, slot, scratch);
}

KvCache::~KvCache() {
  try {
    backend_->bind_thread();
  } catch (const Error&) {  // a GPU that cannot be selected now: its memory goes back as it can
  }
}

void KvCache::copy_block(int32_t from, int32_t to) {
  backend_->bind_thread();
  // A block's rows, then (FP8) its scales.
  const auto n = static_cast<size_t>(block_size_ * row_bytes_);
  const size_t scales = dtype_ == KvDType::FP8 ? static_cast<size_t>(block_size_ * kv_heads_) * sizeof(float) : 0;
  for (auto* rows : {&keys_, &values_}) {
    for (auto& layer : *rows) {
      auto* bytes = static_cast<uint8_t*>(layer.data());
      backend_->copy(bytes + from * n, n, bytes + to * n);
      if (scales > 0) backend_->copy(bytes + scales_at_ + from * scales, scales, bytes + scales_at_ + to * scales);
    }
  }
}

SequenceCache::SequenceCache(const KvShape& c, int64_t capacity, int64_t block_size, KvDType dtype, Backend& backend)
    : cache_(c, (capacity + block_size - 1) / block_size, block_size, dtype, backend),
      blocks_(static_cast<size_t>((capacity + block_size - 1) / block_size)) {
  std::iota(blocks_.begin(), blocks_.end(), 0);
}

}  // namespace nanoserve
