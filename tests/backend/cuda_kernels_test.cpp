// The decode kernels that fuse steps of the forward pass against the steps run apart:
// gated_matvec against matvec then act_mul, add_norm against add then norm; and matvec is the
// product of the weights with the activations rounded to the weight type. Skips without a GPU.
#include <cuda_bf16.h>
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include <fmt/format.h>

#include "backend/cuda/kernels.h"
#include "backend/device_array.h"

namespace nanoserve {
namespace {

std::vector<float> normal_floats(int64_t count, float scale, std::mt19937& rng) {
  std::normal_distribution<float> normal(0.0f, scale);
  std::vector<float> v(static_cast<size_t>(count));
  for (auto& x : v) x = normal(rng);
  return v;
}

// Weights of `type` on the device, and their values widened to double for the host.
struct Weights {
  std::vector<double> values;
  std::unique_ptr<DeviceArray> device;
};

Weights random_weights(cuda::WeightType type, int64_t count, std::mt19937& rng) {
  const std::vector<float> f = normal_floats(count, 0.05f, rng);
  Weights w;
  if (type == cuda::WeightType::F32) {
    w.values.assign(f.begin(), f.end());
    w.device = std::make_unique<DeviceArray>(f);
    return w;
  }
  std::vector<__nv_bfloat16> bits;
  for (float x : f) {
    bits.push_back(__float2bfloat16(x));
    w.values.push_back(__bfloat162float(bits.back()));
  }
  w.device = std::make_unique<DeviceArray>(bits);
  return w;
}

bool same_bits(const std::vector<float>& a, const std::vector<float>& b) {
  return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0;
}

struct Shape {
  int64_t features, cols;
};

// 2048 features fill the GPU with one warp each; 256 and 100 need more warps per feature; 100
// columns leave bf16 rows without whole 16-byte loads.
const Shape kShapes[] = {{2048, 512}, {256, 2048}, {100, 264}, {37, 100}};

TEST(CudaKernels, MatvecIsTheProductOfRoundedActivations) {
  if (!gpu_usable()) GTEST_SKIP() << "no CUDA GPU here";
  std::mt19937 rng(3);
  for (const auto type : {cuda::WeightType::BF16, cuda::WeightType::F32}) {
    for (const Shape& s : kShapes) {
      for (int64_t rows = 1; rows <= cuda::kMatvecRows; ++rows) {
        const Weights w = random_weights(type, s.features * s.cols, rng);
        const std::vector<float> x = normal_floats(rows * s.cols, 1.0f, rng), bias = normal_floats(s.features, 1.0f, rng);
        const DeviceArray x_dev(x), bias_dev(bias), out(static_cast<size_t>(rows * s.features) * sizeof(float));
        const cuda::MatvecTarget target{{w.device->as<void>(), type, s.features, s.cols}, bias_dev.as<float>(),
                                        out.as<float>()};
        cuda::matvec(x_dev.as<float>(), rows, &target, 1, nullptr);
        ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess);
        const std::vector<float> got = out.floats();
        for (int64_t r = 0; r < rows; ++r) {
          for (int64_t f = 0; f < s.features; ++f) {
            double sum = bias[f], magnitude = std::fabs(bias[f]);
            for (int64_t k = 0; k < s.cols; ++k) {
              const float xk = x[r * s.cols + k];
              const double rounded = type == cuda::WeightType::BF16 ? __bfloat162float(__float2bfloat16(xk)) : xk;
              const double term = rounded * w.values[f * s.cols + k];
              sum += term;
              magnitude += std::fabs(term);
            }
            // float32 sums: each of cols + 1 additions rounds by up to 2^-24 of the running magnitude.
            const double bound = magnitude * static_cast<double>(s.cols + 1) * std::ldexp(1.0, -24);
            ASSERT_NEAR(got[r * s.features + f], sum, bound)
                << fmt::format("{} x {}, {} rows, row {} feature {}", s.features, s.cols, rows, r, f);
          }
        }
      }
    }
  }
}

// The same products, up to their summation order: a feature's row may be split over another
// number of warps in each (the split follows the launch's block count). Float32 sums of 2048 terms
// of ~0.05 differ by ~1e-6; a wrong row or feature would miss by ~1.
TEST(CudaKernels, GatedMatvecIsMatvecThenActMul) {
  if (!gpu_usable()) GTEST_SKIP() << "no CUDA GPU here";
  std::mt19937 rng(7);
  for (const auto type : {cuda::WeightType::BF16, cuda::WeightType::F32}) {
    for (const Shape& s : kShapes) {
      for (const auto act : {cuda::ActType::Silu, cuda::ActType::GeluTanh}) {
        for (int64_t rows = 1; rows <= cuda::kMatvecRows; ++rows) {
          const std::string what = fmt::format("{} x {}, {} rows, type {}, act {}", s.features, s.cols, rows,
                                               static_cast<int>(type), static_cast<int>(act));
          const Weights gate = random_weights(type, s.features * s.cols, rng);
          const Weights up = random_weights(type, s.features * s.cols, rng);
          const DeviceArray x(normal_floats(rows * s.cols, 1.0f, rng));
          const DeviceArray gate_bias(normal_floats(s.features, 1.0f, rng)), up_bias(normal_floats(s.features, 1.0f, rng));
          const size_t bytes = static_cast<size_t>(rows * s.features) * sizeof(float);
          const DeviceArray fused(bytes), gate_out(bytes), up_out(bytes);
          const cuda::Matrix g{gate.device->as<void>(), type, s.features, s.cols};
          const cuda::Matrix u{up.device->as<void>(), type, s.features, s.cols};
          cuda::gated_matvec(x.as<float>(), rows, g, gate_bias.as<float>(), u, up_bias.as<float>(), act,
                             fused.as<float>(), nullptr);
          const cuda::MatvecTarget apart[] = {{g, gate_bias.as<float>(), gate_out.as<float>()},
                                              {u, up_bias.as<float>(), up_out.as<float>()}};
          cuda::matvec(x.as<float>(), rows, apart, 2, nullptr);
          cuda::act_mul(act, gate_out.as<float>(), up_out.as<float>(), rows * s.features, nullptr);
          ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess) << what;
          const std::vector<float> got = fused.floats(), expected = gate_out.floats();
          for (size_t i = 0; i < got.size(); ++i) {
            ASSERT_NEAR(got[i], expected[i], 1e-4f * (1.0f + std::fabs(expected[i]))) << what << " at " << i;
          }
        }
      }
    }
  }
}

TEST(CudaKernels, AddNormGivesTheBitsOfAddThenNorm) {
  if (!gpu_usable()) GTEST_SKIP() << "no CUDA GPU here";
  std::mt19937 rng(9);
  for (const auto type : {cuda::NormType::Rms, cuda::NormType::RmsPlusOne, cuda::NormType::Layer}) {
    for (const int64_t cols : {64, 2048, 3000, 10000}) {  // 10000: 16 values a thread
      constexpr int64_t kRows = 3;
      const std::vector<float> x = normal_floats(kRows * cols, 1.0f, rng), y = normal_floats(kRows * cols, 1.0f, rng);
      const DeviceArray weight(normal_floats(cols, 1.0f, rng)), bias(normal_floats(cols, 1.0f, rng));
      const float* b = type == cuda::NormType::Layer ? bias.as<float>() : nullptr;
      const DeviceArray x_fused(x), x_apart(x), y_dev(y);
      const size_t bytes = static_cast<size_t>(kRows * cols) * sizeof(float);
      const DeviceArray out_fused(bytes), out_apart(bytes);
      cuda::add_norm(type, x_fused.as<float>(), y_dev.as<float>(), weight.as<float>(), b, kRows, cols, 1e-5f,
                     out_fused.as<float>(), nullptr);
      cuda::add(x_apart.as<float>(), y_dev.as<float>(), kRows * cols, nullptr);
      cuda::norm(type, x_apart.as<float>(), weight.as<float>(), b, kRows, cols, 1e-5f, out_apart.as<float>(), nullptr);
      ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess);
      const std::string what = fmt::format("norm type {}, {} columns", static_cast<int>(type), cols);
      EXPECT_TRUE(same_bits(x_fused.floats(), x_apart.floats())) << what << ": the residual sums";
      EXPECT_TRUE(same_bits(out_fused.floats(), out_apart.floats())) << what << ": the norms";
      // and the sums are x + y
      const std::vector<float> sums = x_fused.floats();
      for (size_t i = 0; i < sums.size(); ++i) ASSERT_EQ(sums[i], x[i] + y[i]) << what << " at " << i;
    }
  }
}

}  // namespace
}  // namespace nanoserve
