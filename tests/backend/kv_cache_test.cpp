// The KV cache's storage types on the CPU backend: what a row reads back after a write, per dtype,
// and a block's copy (prefix caching's copy-on-write) carrying FP8's scales along with the rows.
#include "backend/kv_cache.h"

#include <gtest/gtest.h>

#include <cmath>
#include <random>

#include "backend/cpu/ops.h"
#include "formats/dtype.h"
#include "model/loader.h"
#include "test_support.h"

namespace nanoserve {
namespace {

constexpr KvShape kShape{.layers = 2, .kv_heads = 3, .head_dim = 32};
constexpr int64_t kBlockSize = 4, kWidth = 3 * 32;

// A row whose heads differ in scale by orders of magnitude: a scale per head keeps each precise.
std::vector<float> row_of(std::mt19937& rng) {
  std::normal_distribution<float> dist(0, 1);
  std::vector<float> row(kWidth);
  const float magnitudes[3] = {1e-3f, 1.0f, 300.0f};
  for (int64_t i = 0; i < kWidth; ++i) row[static_cast<size_t>(i)] = dist(rng) * magnitudes[i / 32];
  return row;
}

struct KvCacheTest : ::testing::Test {
  Model model = load_model(test::fixture("tinyllama"));
  std::unique_ptr<Backend> backend = make_cpu_backend(model);
};

// FP8 E4M3 holds 3 mantissa bits: a value within 2^-4 of itself, or within half the smallest
// subnormal step (2^-10 of the scale) near zero, where the scale maps the head's largest to 448.
TEST_F(KvCacheTest, Fp8RowsReadBackWithinHalfAStepOfTheirHeadsScale) {
  KvCache cache(kShape, 4, kBlockSize, KvDType::FP8, *backend);
  EXPECT_EQ(KvCache::bytes_per_block(kShape, kBlockSize, KvDType::FP8), 2 * 2 * kBlockSize * (kWidth + 3 * 4));
  std::mt19937 rng(1);
  const std::vector<float> key = row_of(rng), value = row_of(rng);
  cache.write(1, 2, 3, key.data(), value.data());
  std::vector<float> scratch(kWidth);
  for (const bool keys : {true, false}) {
    const std::vector<float>& x = keys ? key : value;
    const float* back = keys ? cache.key(1, 2, 3, scratch.data()) : cache.value(1, 2, 3, scratch.data());
    for (int64_t h = 0; h < 3; ++h) {
      float largest = 0;
      for (int64_t d = 0; d < 32; ++d) largest = std::max(largest, std::fabs(x[static_cast<size_t>(h * 32 + d)]));
      const float scale = largest / 448.0f;
      EXPECT_EQ(cache.key_scales(1)[(2 * kBlockSize + 3) * 3 + h] == scale, keys);
      for (int64_t d = 0; d < 32; ++d) {
        const auto i = static_cast<size_t>(h * 32 + d);
        EXPECT_NEAR(back[i], x[i], std::max(std::fabs(x[i]) / 16, scale / 1024)) << "head " << h << ", dim " << d;
      }
    }
  }
}

TEST_F(KvCacheTest, CopyingABlockCarriesItsRowsAndFp8Scales) {
  for (const KvDType dtype : {KvDType::F32, KvDType::BF16, KvDType::FP8, KvDType::Q8_0}) {
    KvCache cache(kShape, 4, kBlockSize, dtype, *backend);
    std::mt19937 rng(2);
    for (int64_t slot = 0; slot < kBlockSize; ++slot) {
      const std::vector<float> key = row_of(rng), value = row_of(rng);
      cache.write(0, 1, slot, key.data(), value.data());
    }
    cache.copy_block(1, 3);
    std::vector<float> a(kWidth), b(kWidth);
    for (int64_t slot = 0; slot < kBlockSize; ++slot) {
      const float* from = cache.value(0, 1, slot, a.data());
      const float* to = cache.value(0, 3, slot, b.data());
      EXPECT_EQ(std::vector<float>(from, from + kWidth), std::vector<float>(to, to + kWidth))
          << kv_dtype_name(dtype) << ", slot " << slot;
    }
  }
}

TEST(KvDTypes, ParseTheirNames) {
  for (const KvDType dtype : {KvDType::F32, KvDType::BF16, KvDType::FP8, KvDType::Q8_0}) {
    KvDType parsed{};
    ASSERT_TRUE(parse_kv_dtype(kv_dtype_name(dtype), &parsed));
    EXPECT_EQ(parsed, dtype);
  }
  KvDType parsed{};
  EXPECT_TRUE(parse_kv_dtype("fp8_e4m3", &parsed) && parsed == KvDType::FP8);
  EXPECT_FALSE(parse_kv_dtype("fp8_e5m2", &parsed));
}

}  // namespace
}  // namespace nanoserve
