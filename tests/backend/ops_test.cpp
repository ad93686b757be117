// The CPU kernels against plain double-precision loops.
#include "backend/cpu/ops.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <random>

#include "backend/cpu/lanes.h"
#include "backend/cpu/reduced_dot.h"
#include "formats/quant.h"
#include "util/error.h"
#include "util/thread_pool.h"

namespace nanoserve {
namespace {

uint16_t to_bf16(float f) {  // truncation is fine: the test widens the same bits it stores
  uint32_t u;
  std::memcpy(&u, &f, 4);
  return static_cast<uint16_t>(u >> 16);
}

struct RandomWeights {
  std::vector<float> f32;
  std::vector<uint16_t> bf16;
  TensorView view(DType dtype, int64_t n, int64_t k) const {
    TensorView v{"w", dtype, {n, k}, nullptr, 0};
    v.data = dtype == DType::F32 ? reinterpret_cast<const uint8_t*>(f32.data())
                                 : reinterpret_cast<const uint8_t*>(bf16.data());
    v.nbytes = static_cast<size_t>(n * k) * dtype_size(dtype);
    return v;
  }
};

RandomWeights random_weights(int64_t count, std::mt19937& rng) {
  std::normal_distribution<float> dist(0, 1);
  RandomWeights w;
  for (int64_t i = 0; i < count; ++i) {
    w.bf16.push_back(to_bf16(dist(rng)));
    w.f32.push_back(bf16_to_float(w.bf16.back()));  // the same values in both dtypes
  }
  return w;
}

// Row pointers of a contiguous [positions, width] array, as attention reads cache blocks.
std::vector<const float*> rows(const float* base, int64_t positions, int64_t width) {
  std::vector<const float*> out;
  for (int64_t p = 0; p < positions; ++p) out.push_back(base + p * width);
  return out;
}

// Odd sizes exercise every tile remainder (rows % 4, k % 8). Float32 activations: 1e-4 sqrt(k);
// where BF16 weights take the bf16 dot products (reduced_dot.h), the bound of bf16 activations,
// 2^-8 of sum |w x|.
TEST(CpuOps, MatmulMatchesDoubleReferenceForEveryDtypeAndShape) {
  std::mt19937 rng(7);
  for (auto [rows, n, k] : {std::tuple{1, 7, 13}, {5, 9, 64}, {4, 4, 8}, {6, 33, 100}}) {
    auto w = random_weights(n * k, rng);
    std::vector<float> x(static_cast<size_t>(rows * k));
    std::normal_distribution<float> dist(0, 1);
    for (auto& v : x) v = dist(rng);
    for (DType dtype : {DType::F32, DType::BF16}) {
      std::vector<float> out(static_cast<size_t>(rows * n));
      cpu::linear(x.data(), rows, {w.view(dtype, n, k), {}, false}, out.data());
      for (int r = 0; r < rows; ++r) {
        for (int o = 0; o < n; ++o) {
          double expected = 0, magnitude = 0;
          for (int i = 0; i < k; ++i) {
            const double term =
                static_cast<double>(x[static_cast<size_t>(r * k + i)]) * w.f32[static_cast<size_t>(o * k + i)];
            expected += term;
            magnitude += std::abs(term);
          }
          const bool reduced = dtype == DType::BF16 && cpu::takes_reduced_dot(DType::BF16);
          EXPECT_NEAR(out[static_cast<size_t>(r * n + o)], expected,
                      reduced ? std::ldexp(magnitude, -8) : 1e-4 * std::sqrt(k))
              << rows << "x" << n << "x" << k << " " << dtype_name(dtype);
        }
      }
    }
  }
}

TEST(CpuOps, MatmulRowsDoNotDependOnBatch) {
  std::mt19937 rng(3);
  const int64_t n = 21, k = 77, rows = 7;
  auto w = random_weights(n * k, rng);
  std::vector<float> x(static_cast<size_t>(rows * k));
  std::normal_distribution<float> dist(0, 1);
  for (auto& v : x) v = dist(rng);
  std::vector<float> batched(static_cast<size_t>(rows * n)), single(static_cast<size_t>(n));
  cpu::linear(x.data(), rows, {w.view(DType::BF16, n, k), {}, false}, batched.data());
  for (int64_t r = 0; r < rows; ++r) {
    cpu::linear(x.data() + r * k, 1, {w.view(DType::BF16, n, k), {}, false}, single.data());
    for (int64_t o = 0; o < n; ++o) ASSERT_EQ(single[static_cast<size_t>(o)], batched[static_cast<size_t>(r * n + o)]);
  }
}

// Id -1 is a row that another tensor-parallel rank's share of the vocabulary holds: zeros.
TEST(CpuOps, EmbedGivesZerosForMinusOneAndRefusesOtherIds) {
  const std::vector<float> table = {1, 2, 3, 4, 5, 6};  // [3, 2]
  const TensorView view{"embed", DType::F32, {3, 2}, reinterpret_cast<const uint8_t*>(table.data()), 24};
  std::vector<float> out(6, 9.0f);
  const int32_t ids[] = {2, -1, 0};
  cpu::embed(view, ids, out.data());
  EXPECT_EQ(out, (std::vector<float>{5, 6, 0, 0, 1, 2}));
  const int32_t bad[] = {-2};
  EXPECT_THROW(cpu::embed(view, bad, out.data()), Error);
}

// Masks of every kind a grammar gives: empty, full and mixed words, a partial last word, ties
// (the lowest allowed index wins), and a row with nothing allowed.
TEST(CpuOps, ArgmaxAllowedIsTheFirstLargestAmongTheSetBits) {
  std::mt19937 rng(5);
  std::uniform_int_distribution<int> small(0, 7);  // few distinct values: many ties
  for (int64_t cols : {1, 63, 64, 65, 200, 4096 + 17}) {
    std::vector<float> row(static_cast<size_t>(cols));
    for (float& v : row) v = static_cast<float>(small(rng));
    const int64_t words = (cols + 63) / 64;
    for (int density : {0, 1, 50, 100}) {
      std::vector<uint64_t> bits(static_cast<size_t>(words));
      std::uniform_int_distribution<int> percent(0, 99);
      for (int64_t c = 0; c < cols; ++c) {
        const bool whole_word = (c / 64) % 3 == 0 && density == 50;  // some full words among mixed
        if (whole_word || percent(rng) < density) bits[static_cast<size_t>(c / 64)] |= uint64_t{1} << (c % 64);
      }
      int32_t expected = -1;
      for (int64_t c = 0; c < cols; ++c) {
        if (((bits[static_cast<size_t>(c / 64)] >> (c % 64)) & 1) &&
            (expected < 0 || row[static_cast<size_t>(c)] > row[static_cast<size_t>(expected)]))
          expected = static_cast<int32_t>(c);
      }
      EXPECT_EQ(cpu::argmax_allowed(row.data(), cols, bits.data()), expected) << cols << " " << density;
    }
  }
}

TEST(CpuOps, RmsNorm) {
  float x[4] = {1, -2, 3, -4};
  float w[4] = {1, 0.5f, 2, 1};
  TensorView weight{"w", DType::F32, {4}, reinterpret_cast<const uint8_t*>(w), sizeof w};
  float out[4];
  cpu::norm(NormKind::Rms, x, {weight, {}}, 1, 4, 1e-6, out);
  const double rms = std::sqrt((1 + 4 + 9 + 16) / 4.0 + 1e-6);
  for (int i = 0; i < 4; ++i) EXPECT_NEAR(out[i], x[i] / rms * w[i], 1e-6);
}

TEST(CpuOps, SiluMul) {
  float gate[3] = {-1, 0, 2};
  const float up[3] = {2, 3, 0.5f};
  cpu::act_mul(Activation::Silu, gate, up, 3);
  EXPECT_NEAR(gate[0], -1 / (1 + std::exp(1.0)) * 2, 1e-6);
  EXPECT_EQ(gate[1], 0.0f);
  EXPECT_NEAR(gate[2], 2 / (1 + std::exp(-2.0)) * 0.5, 1e-6);
}

// Two query heads sharing one KV head; the second query sees both positions, the first only one.
TEST(CpuOps, CausalGroupedAttention) {
  const float k[2 * 2] = {1, 0, 0, 1};  // [positions, kv_heads * head_dim] with head_dim 2
  const float v[2 * 2] = {10, 20, 30, 40};
  const float q[2 * 4] = {1, 0, 0, 1,   // token 0: head 0, head 1
                          1, 0, 0, 2};  // token 1
  float out[2 * 4];
  cpu::attention(q, 2, 0, rows(k, 2, 2).data(), rows(v, 2, 2).data(), {2, 1, 2, static_cast<float>(1 / std::sqrt(2.0))},
                 out);
  EXPECT_FLOAT_EQ(out[0], 10);  // token 0 attends only to position 0
  EXPECT_FLOAT_EQ(out[3], 20);
  const double s = 1 / std::sqrt(2.0);
  double p1 = std::exp(0.0) / (std::exp(1 * s) + std::exp(0.0));  // token 1, head 0: scores (s, 0)
  EXPECT_NEAR(out[4], (1 - p1) * 10 + p1 * 30, 1e-5);
  double p2 = std::exp(2 * s) / (std::exp(0.0) + std::exp(2 * s));  // head 1: scores (0, 2s)
  EXPECT_NEAR(out[7], (1 - p2) * 20 + p2 * 40, 1e-5);
}

// A column range of an [in, out] matrix (GPT-2's fused c_attn split into q, k, v) with a bias.
TEST(CpuOps, InOutLayoutColumnViewWithBias) {
  const float w[2 * 6] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12};  // [in 2, out 6]
  const float b[2] = {0.5f, -0.5f};
  TensorView view{"w", DType::F32, {2, 2}, reinterpret_cast<const uint8_t*>(w + 2), sizeof w, 6};  // columns 2..3
  TensorView bias{"b", DType::F32, {2}, reinterpret_cast<const uint8_t*>(b), sizeof b};
  const float x[2] = {1, 10};
  float out[2];
  cpu::linear(x, 1, {view, bias, true}, out);
  EXPECT_FLOAT_EQ(out[0], 1 * 3 + 10 * 9 + 0.5f);
  EXPECT_FLOAT_EQ(out[1], 1 * 4 + 10 * 10 - 0.5f);
}

TEST(CpuOps, NormKinds) {
  float x[3] = {1, 2, 6};
  float w[3] = {0.5f, 1, 2}, b[3] = {1, 0, -1};
  TensorView wv{"w", DType::F32, {3}, reinterpret_cast<const uint8_t*>(w), sizeof w};
  TensorView bv{"b", DType::F32, {3}, reinterpret_cast<const uint8_t*>(b), sizeof b};
  float out[3];
  cpu::norm(NormKind::RmsPlusOne, x, {wv, {}}, 1, 3, 0, out);
  const double rms = std::sqrt((1 + 4 + 36) / 3.0);
  EXPECT_NEAR(out[2], 6 / rms * 3, 1e-5);
  cpu::norm(NormKind::Layer, x, {wv, bv}, 1, 3, 0, out);
  const double mean = 3, sd = std::sqrt((4 + 1 + 9) / 3.0);
  EXPECT_NEAR(out[0], (1 - mean) / sd * 0.5 + 1, 1e-5);
  EXPECT_NEAR(out[2], (6 - mean) / sd * 2 - 1, 1e-5);
}

// A window of 2 hides position 0 from the query at position 2; softcap bends the scores.
TEST(CpuOps, SlidingWindowAndSoftcap) {
  const float k[3] = {1, 1, 1};
  const float v[3] = {100, 10, 20};
  const float q[1] = {1};
  float out[1];
  cpu::attention(q, 1, 2, rows(k, 3, 1).data(), rows(v, 3, 1).data(), {1, 1, 1, 1.0f, 0.0f, 2}, out);
  EXPECT_FLOAT_EQ(out[0], 15);  // equal scores over positions 1 and 2 only
  const float k2[2] = {1, 3};
  const float v2[2] = {0, 1};
  cpu::attention(q, 1, 1, rows(k2, 2, 1).data(), rows(v2, 2, 1).data(), {1, 1, 1, 1.0f, 2.0f, 0}, out);
  const double s0 = 2 * std::tanh(0.5), s1 = 2 * std::tanh(1.5);
  EXPECT_NEAR(out[0], std::exp(s1) / (std::exp(s0) + std::exp(s1)), 1e-6);
}

TEST(CpuOps, GeluTanh) {
  float x[2] = {1.0f, -2.0f};
  cpu::activate(Activation::GeluTanh, x, 2);
  auto gelu = [](double v) { return 0.5 * v * (1 + std::tanh(std::sqrt(2 / M_PI) * (v + 0.044715 * v * v * v))); };
  EXPECT_NEAR(x[0], gelu(1.0), 1e-6);
  EXPECT_NEAR(x[1], gelu(-2.0), 1e-6);
}

TEST(CpuOps, Float16Widening) {
  EXPECT_EQ(f16_to_float(0x3C00), 1.0f);
  EXPECT_EQ(f16_to_float(0xC000), -2.0f);
  EXPECT_EQ(f16_to_float(0x0001), 5.9604644775390625e-8f);  // smallest subnormal
  EXPECT_TRUE(std::isinf(f16_to_float(0x7C00)));
  EXPECT_TRUE(std::isnan(f16_to_float(0x7E00)));
  EXPECT_EQ(bf16_to_float(0x3F80), 1.0f);
}

}  // namespace
}  // namespace nanoserve

namespace nanoserve {
namespace {

// The vector e^x of softmax and SiLU against double-precision exp, every 0.001 over the range
// it covers: within 1.5 ulp (measured 0.97); NaN stays NaN; below the range, e^-87.
TEST(CpuOps, ExpLanesWithinAnUlpAndAHalf) {
  double worst = 0;
  for (float x = -87.0f; x < 87.9f; x += 0.001f) {
    cpu::v16 v;
    for (int i = 0; i < 16; ++i) v[i] = x;
    cpu::exp_lanes(v);
    const double exact = std::exp(static_cast<double>(x));
    const double ulp = std::ldexp(1.0, std::ilogb(static_cast<float>(exact)) - 23);
    worst = std::max(worst, std::abs(v[0] - exact) / ulp);
  }
  EXPECT_LE(worst, 1.5);
  cpu::v16 v{};
  v[0] = NAN;
  v[1] = -1000;
  cpu::exp_lanes(v);
  EXPECT_TRUE(std::isnan(v[0]));
  EXPECT_FLOAT_EQ(v[1], std::exp(-87.0f));
  EXPECT_EQ(v[2], 1.0f);
}

}  // namespace
}  // namespace nanoserve
