// The CUDA tensor-core linear kernel against a double-precision product, and each row's bits the
// same whatever batch it runs in (what batched greedy decoding relies on). Skips without a GPU.
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <random>
#include <vector>

#include "backend/cuda/kernels.h"
#include "backend/device_array.h"

namespace nanoserve {
namespace {

struct Case {
  cuda::WeightType type;
  int64_t features, cols;  // 8, 2 and 1 warps split K: 4096 = 128 chunks, 264 = 9, 136 = 5 (with a tail)
};

class TensorCoreLinearTest : public ::testing::TestWithParam<Case> {};

// Half values: the bits to upload, and the same values widened for the host reference.
struct HalfValues {
  std::vector<uint16_t> bits;
  std::vector<double> values;
};

HalfValues random_half(cuda::WeightType type, int64_t count, float scale, std::mt19937& rng) {
  std::normal_distribution<float> normal(0.0f, scale);
  HalfValues h;
  for (int64_t i = 0; i < count; ++i) {
    const float f = normal(rng);
    uint16_t bits;
    float back;
    if (type == cuda::WeightType::BF16) {
      const __nv_bfloat16 b = __float2bfloat16(f);
      std::memcpy(&bits, &b, 2);
      back = __bfloat162float(b);
    } else {
      const __half b = __float2half(f);
      std::memcpy(&bits, &b, 2);
      back = __half2float(b);
    }
    h.bits.push_back(bits);
    h.values.push_back(back);
  }
  return h;
}

TEST_P(TensorCoreLinearTest, MatchesADoubleProductAndRowsDoNotDependOnTheBatch) {
  if (!gpu_usable()) GTEST_SKIP() << "no CUDA GPU here";
  const Case c = GetParam();
  constexpr int64_t kRows = 70;  // five 16-row tiles, the last one partial
  std::mt19937 rng(11);
  const HalfValues w = random_half(c.type, c.features * c.cols, 0.05f, rng);
  const HalfValues x = random_half(c.type, kRows * c.cols, 1.0f, rng);
  std::vector<float> bias(static_cast<size_t>(c.features));
  for (auto& b : bias) b = std::normal_distribution<float>(0.0f, 1.0f)(rng);
  const DeviceArray w_dev(w.bits), x_dev(x.bits), bias_dev(bias);
  const cuda::Matrix matrix{w_dev.as<void>(), c.type, c.features, c.cols};
  ASSERT_TRUE(cuda::tensor_core_linear_fits(matrix));

  // rows of x from `first`, run as one batch
  auto run = [&](int64_t first, int64_t rows) {
    DeviceArray out(static_cast<size_t>(rows * c.features) * sizeof(float));
    cuda::tensor_core_linear(x_dev.as<uint16_t>() + first * c.cols, rows, matrix, bias_dev.as<float>(), out.as<float>(),
                             nullptr);
    EXPECT_EQ(cudaDeviceSynchronize(), cudaSuccess);
    return out.floats();
  };
  const std::vector<float> all = run(0, kRows);

  // Products of two halves are exact in float32; only the sums round, which tensor cores may do by
  // truncation: bound each error by the sum of |terms| times K + 1 roundings of up to 2^-23.
  for (int64_t r = 0; r < kRows; ++r) {
    for (int64_t f = 0; f < c.features; ++f) {
      double sum = bias[f], magnitude = std::fabs(bias[f]);
      for (int64_t k = 0; k < c.cols; ++k) {
        const double term = x.values[r * c.cols + k] * w.values[f * c.cols + k];
        sum += term;
        magnitude += std::fabs(term);
      }
      const double bound = magnitude * static_cast<double>(c.cols + 1) * std::ldexp(1.0, -23);
      ASSERT_NEAR(all[r * c.features + f], sum, bound) << "row " << r << " feature " << f;
    }
  }

  for (const auto& [first, rows] :
       std::vector<std::pair<int64_t, int64_t>>{{0, 1}, {3, 1}, {69, 1}, {0, 5}, {17, 16}, {40, 30}}) {
    const std::vector<float> part = run(first, rows);
    ASSERT_EQ(0, std::memcmp(part.data(), all.data() + first * c.features, part.size() * sizeof(float)))
        << rows << " rows from row " << first << " differ from the same rows in a batch of " << kRows;
  }
}

INSTANTIATE_TEST_SUITE_P(Shapes, TensorCoreLinearTest,
                         ::testing::Values(Case{cuda::WeightType::BF16, 40, 4096},
                                           Case{cuda::WeightType::BF16, 24, 264},
                                           Case{cuda::WeightType::BF16, 300, 136},
                                           Case{cuda::WeightType::F16, 40, 4096}));

}  // namespace
}  // namespace nanoserve
