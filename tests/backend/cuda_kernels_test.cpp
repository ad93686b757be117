// The decode kernels that fuse steps of the forward pass against the steps run apart:
// gated_matvec against matvec then act_mul, add_norm against add then norm, decode attention
// rotating its inputs against rope then attention; and matvec is the product of the weights with
// the activations rounded to the weight type. Skips without a GPU.
#include <cuda_bf16.h>
#include <gtest/gtest.h>

#include <algorithm>
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
        const std::vector<float> x = normal_floats(rows * s.cols, 1.0f, rng),
                                 bias = normal_floats(s.features, 1.0f, rng);
        const DeviceArray x_dev(x), bias_dev(bias), out(static_cast<size_t>(rows * s.features) * sizeof(float));
        const cuda::MatvecTarget target{
            {w.device->as<void>(), type, s.features, s.cols}, bias_dev.as<float>(), out.as<float>()};
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
          const DeviceArray gate_bias(normal_floats(s.features, 1.0f, rng)),
              up_bias(normal_floats(s.features, 1.0f, rng));
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

// The argmax of each row against the host's, the lowest index among equal maxima: rows of widths
// that are and are not whole float4s (an odd width also misaligns every other row), a vocabulary's
// width, maxima repeated across the threads' columns, and a mask allowing every third column.
TEST(CudaKernels, ArgmaxRowsPicksTheFirstLargestAllowedColumn) {
  if (!gpu_usable()) GTEST_SKIP() << "no CUDA GPU here";
  std::mt19937 rng(21);
  for (const int64_t cols : {1, 37, 1000, 4097, 128256}) {
    for (const bool masked : {false, true}) {
      constexpr int64_t kRows = 5;
      std::vector<float> x = normal_floats(kRows * cols, 1.0f, rng);
      for (int64_t r = 0; r < kRows; ++r) {  // the row's maximum again at scattered later columns
        const auto row = x.begin() + r * cols;
        const float top = *std::max_element(row, row + cols) + 1.0f;
        for (int64_t c = r; c < cols; c += 7 + r * 977) row[c] = top;
      }
      const int64_t words = (cols + 63) / 64;
      std::vector<uint64_t> bits(static_cast<size_t>(kRows * words), 0);
      std::vector<int32_t> expected(kRows, -1);
      for (int64_t r = 0; r < kRows; ++r) {
        for (int64_t c = 0; c < cols; ++c) {
          if (masked && (c + r) % 3 != 0) continue;
          bits[static_cast<size_t>(r * words + c / 64)] |= uint64_t{1} << (c % 64);
          const float v = x[static_cast<size_t>(r * cols + c)];
          int32_t& best = expected[static_cast<size_t>(r)];
          if (best < 0 || v > x[static_cast<size_t>(r * cols + best)]) best = static_cast<int32_t>(c);
        }
      }
      const DeviceArray x_dev(x), bits_dev(bits), out(static_cast<size_t>(kRows) * sizeof(int32_t));
      cuda::argmax_rows(x_dev.as<float>(), kRows, cols, masked ? bits_dev.as<uint64_t>() : nullptr, out.as<int32_t>(),
                        nullptr);
      std::vector<int32_t> picked(kRows);
      ASSERT_EQ(cudaMemcpy(picked.data(), out.as<int32_t>(), picked.size() * sizeof(int32_t), cudaMemcpyDeviceToHost),
                cudaSuccess);
      EXPECT_EQ(picked, expected) << cols << " columns" << (masked ? ", masked" : "");
    }
  }
}

// A decode step of one token per sequence at `positions` on the device: each sequence's block table
// over distinct blocks of one pool, in a scattered order.
struct DecodeStep {
  static constexpr int kBlockSize = 16;
  std::vector<int32_t> tables, table_of_token, singles;
  int64_t cache_rows = 0;
  std::unique_ptr<DeviceArray> positions_dev, tables_dev, owners_dev, singles_dev;
  cuda::StepArrays step;

  DecodeStep(const std::vector<int32_t>& positions, std::mt19937& rng) {
    const auto tokens = static_cast<int64_t>(positions.size());
    int32_t next_block = 0;
    for (int64_t t = 0; t < tokens; ++t) {
      table_of_token.push_back(static_cast<int32_t>(tables.size()));
      singles.push_back(static_cast<int32_t>(t));
      for (int b = 0; b <= positions[t] / kBlockSize; ++b) tables.push_back(next_block++);
    }
    std::shuffle(tables.begin(), tables.end(), rng);
    cache_rows = static_cast<int64_t>(next_block) * kBlockSize;
    positions_dev = std::make_unique<DeviceArray>(positions);
    tables_dev = std::make_unique<DeviceArray>(tables);
    owners_dev = std::make_unique<DeviceArray>(table_of_token);
    singles_dev = std::make_unique<DeviceArray>(singles);
    step.tokens = tokens;
    step.positions = positions_dev->as<int32_t>();
    step.block_tables = tables_dev->as<int32_t>();
    step.table_of_token = owners_dev->as<int32_t>();
    step.block_size = kBlockSize;
    step.single_tokens = singles_dev->as<int32_t>();
    step.singles = tokens;
    step.one_token_slices = true;
  }
};

// A decode step's attention with RoPE in the kernel against the rope kernel then attention: the
// same bits in the output and in the cache rows it stores, for rotate-half and interleaved pairs,
// partial rotary, one and several partitions, and head_dim 64 and 128 (S = 1, 2).
TEST(CudaKernels, DecodeAttentionRotatingItsInputsIsRopeThenAttention) {
  if (!gpu_usable()) GTEST_SKIP() << "no CUDA GPU here";
  std::mt19937 rng(13);
  constexpr int kHeads = 8, kKvHeads = 2;
  const DecodeStep decode({0, 37, 300}, rng);
  const cuda::StepArrays& step = decode.step;
  const int64_t tokens = step.tokens, cache_rows = decode.cache_rows;
  for (const int64_t head_dim : {64, 128}) {
    for (const int64_t rotary_dim : {head_dim, head_dim / 2}) {
      for (const bool interleaved : {false, true}) {
        for (const int partitions : {1, 4}) {
          const std::string what = fmt::format("head_dim {}, rotary_dim {}, {}, {} partitions", head_dim, rotary_dim,
                                               interleaved ? "interleaved" : "rotate half", partitions);
          const int64_t kv_dim = kKvHeads * head_dim, half = rotary_dim / 2;
          const std::vector<float> q = normal_floats(tokens * kHeads * head_dim, 1.0f, rng);
          const std::vector<float> k = normal_floats(tokens * kv_dim, 1.0f, rng),
                                   v = normal_floats(tokens * kv_dim, 1.0f, rng);
          const std::vector<float> keys = normal_floats(cache_rows * kv_dim, 1.0f, rng);
          const std::vector<float> values = normal_floats(cache_rows * kv_dim, 1.0f, rng);
          std::vector<float> cos, sin;
          for (const float angle : normal_floats(tokens * half, 3.0f, rng)) {
            cos.push_back(std::cos(angle));
            sin.push_back(std::sin(angle));
          }
          const DeviceArray cos_dev(cos), sin_dev(sin), v_dev(v);
          const cuda::Rotation rotation{cos_dev.as<float>(), sin_dev.as<float>(), rotary_dim, interleaved};
          const cuda::AttentionShape shape{kHeads, kKvHeads, head_dim, 0.125f, 0.0f, 0};
          const size_t out_bytes = static_cast<size_t>(tokens * kHeads * head_dim) * sizeof(float);
          const size_t partial_bytes =
              static_cast<size_t>(tokens * kHeads * partitions * (head_dim + 2)) * sizeof(float);
          const std::vector<int32_t> zeros(static_cast<size_t>(tokens * kKvHeads), 0);
          // Apart: the rope kernel, then attention on the rotated q and k.
          const DeviceArray q_apart(q), k_apart(k), keys_apart(keys), values_apart(values), out_apart(out_bytes);
          const DeviceArray partials_apart(partial_bytes), arrivals_apart(zeros);
          cuda::rope(q_apart.as<float>(), kHeads, k_apart.as<float>(), kKvHeads, tokens, head_dim, rotation, nullptr);
          cuda::attention(step, shape, q_apart.as<float>(), k_apart.as<float>(), v_dev.as<float>(), {},
                          cuda::CacheType::F32, {keys_apart.as<float>(), values_apart.as<float>(), nullptr, nullptr},
                          out_apart.as<float>(), {partitions, 1}, partials_apart.as<float>(), arrivals_apart.as<int>(),
                          false, nullptr);
          // Fused: attention rotating q and the step's keys itself.
          const DeviceArray q_fused(q), k_fused(k), keys_fused(keys), values_fused(values), out_fused(out_bytes);
          const DeviceArray partials_fused(partial_bytes), arrivals_fused(zeros);
          cuda::attention(step, shape, q_fused.as<float>(), k_fused.as<float>(), v_dev.as<float>(), rotation,
                          cuda::CacheType::F32, {keys_fused.as<float>(), values_fused.as<float>(), nullptr, nullptr},
                          out_fused.as<float>(), {partitions, 1}, partials_fused.as<float>(), arrivals_fused.as<int>(),
                          false, nullptr);
          ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess) << what;
          EXPECT_TRUE(same_bits(out_fused.floats(), out_apart.floats())) << what << ": the outputs";
          EXPECT_TRUE(same_bits(keys_fused.floats(), keys_apart.floats())) << what << ": the cached keys";
          EXPECT_TRUE(same_bits(values_fused.floats(), values_apart.floats())) << what << ": the cached values";
          // and the step's keys did reach the cache, rotated: the row of the last token differs from before.
          EXPECT_FALSE(same_bits(keys_fused.floats(), keys)) << what;
          EXPECT_TRUE(same_bits(q_fused.floats(), q)) << what << ": q is left as it was";
        }
      }
    }
  }
}

// Decode attention with its queries' keys split into runs (DecodeSplit) against one pass: the same
// output to float32 rounding (the runs' partial sums combine in another order), the same bits in
// the cache rows the step stores, and the counters left zero for the next step. Queries of 1, 32,
// 33, 301, 1001 and 2048 keys, so that with runs of at least 2 or 8 chunks some take one run, some
// fewer than the launch allows, some as many; a float32 cache and a bf16 one.
TEST(CudaKernels, DecodeAttentionInRunsIsOnePass) {
  if (!gpu_usable()) GTEST_SKIP() << "no CUDA GPU here";
  std::mt19937 rng(17);
  constexpr int kHeads = 8, kKvHeads = 2;
  const DecodeStep decode({0, 31, 32, 300, 1000, 2047}, rng);
  const cuda::StepArrays& step = decode.step;
  const int64_t tokens = step.tokens;
  for (const int64_t head_dim : {64, 128}) {
    for (const cuda::CacheType cache : {cuda::CacheType::F32, cuda::CacheType::BF16}) {
      const int64_t kv_dim = kKvHeads * head_dim, elements = decode.cache_rows * kv_dim;
      const std::vector<float> q = normal_floats(tokens * kHeads * head_dim, 1.0f, rng);
      const std::vector<float> k = normal_floats(tokens * kv_dim, 1.0f, rng),
                               v = normal_floats(tokens * kv_dim, 1.0f, rng);
      const std::vector<float> keys = normal_floats(elements, 1.0f, rng), values = normal_floats(elements, 1.0f, rng);
      std::vector<__nv_bfloat16> bf16_keys, bf16_values;
      for (int64_t i = 0; i < elements; ++i) {
        bf16_keys.push_back(__float2bfloat16(keys[static_cast<size_t>(i)]));
        bf16_values.push_back(__float2bfloat16(values[static_cast<size_t>(i)]));
      }
      const DeviceArray q_dev(q), k_dev(k), v_dev(v);
      const cuda::AttentionShape shape{kHeads, kKvHeads, head_dim, 0.125f, 0.0f, 0};
      const std::vector<int32_t> zeros(static_cast<size_t>(tokens * kKvHeads), 0);
      // The output and the cache's keys and values (as stored) of a step split as `split` says.
      const auto run = [&](const cuda::DecodeSplit& split) {
        const bool f32 = cache == cuda::CacheType::F32;
        const DeviceArray keys_dev = f32 ? DeviceArray(keys) : DeviceArray(bf16_keys);
        const DeviceArray values_dev = f32 ? DeviceArray(values) : DeviceArray(bf16_values);
        const DeviceArray out(static_cast<size_t>(tokens * kHeads * head_dim) * sizeof(float));
        const DeviceArray partials(static_cast<size_t>(tokens * kHeads * split.partitions * (head_dim + 2)) *
                                   sizeof(float));
        const DeviceArray arrivals(zeros);
        cuda::attention(step, shape, q_dev.as<float>(), k_dev.as<float>(), v_dev.as<float>(), {}, cache,
                        {keys_dev.as<void>(), values_dev.as<void>(), nullptr, nullptr}, out.as<float>(), split,
                        partials.as<float>(), arrivals.as<int>(), false, nullptr);
        EXPECT_EQ(cudaDeviceSynchronize(), cudaSuccess);
        EXPECT_TRUE(same_bits(arrivals.floats(), std::vector<float>(zeros.size(), 0.0f))) << "counters left at zero";
        return std::vector<std::vector<float>>{out.floats(), keys_dev.floats(), values_dev.floats()};
      };
      const auto one_pass = run({1, 1});
      for (const cuda::DecodeSplit split : {cuda::DecodeSplit{16, 8}, {3, 8}, {16, 2}, {4, 1}}) {
        const std::string what =
            fmt::format("head_dim {}, {} cache, split {{{}, {}}}", head_dim,
                        cache == cuda::CacheType::F32 ? "f32" : "bf16", split.partitions, split.run_chunks);
        const auto in_runs = run(split);
        float largest = 0;
        for (size_t i = 0; i < one_pass[0].size(); ++i) {
          largest = std::max(largest, std::abs(in_runs[0][i] - one_pass[0][i]));
        }
        EXPECT_LE(largest, 2e-6f) << what << ": the outputs";
        EXPECT_TRUE(same_bits(in_runs[1], one_pass[1])) << what << ": the cached keys";
        EXPECT_TRUE(same_bits(in_runs[2], one_pass[2])) << what << ": the cached values";
      }
    }
  }
}

// How decode queries split (on an H100's 132 multiprocessors, 8 KV heads, steps of up to 64
// queries recorded): a small batch fills the GPU with runs of any length; a recorded batch that
// fills it splits by the batch alone, in runs of 256 keys or more; a larger batch splits by its
// longest query, in runs of 256 keys or more, up to kMaxPartitions.
TEST(CudaKernels, DecodeSplitFillsTheGpuAndShortensTheLongestQueries) {
  const auto split = [](int64_t singles, int64_t longest) {
    const cuda::DecodeSplit s = cuda::decode_split(singles, 8, longest, 64, 132);
    return std::pair(s.partitions, s.run_chunks);
  };
  EXPECT_EQ(split(1, 100), std::pair(16, 1));   // 264 blocks wanted: 33 runs a query, at most 16
  EXPECT_EQ(split(16, 5000), std::pair(3, 1));  // 128 pairs: ceil(264 / 128)
  EXPECT_EQ(split(33, 100), std::pair(4, 8));   // 264 pairs: ceil(8 * 132 / 264)
  EXPECT_EQ(split(64, 100000), std::pair(3, 8));
  EXPECT_EQ(split(256, 100), std::pair(1, 8));
  EXPECT_EQ(split(256, 2048), std::pair(8, 8));
  EXPECT_EQ(split(256, 2049), std::pair(9, 8));
  EXPECT_EQ(split(256, 1000000), std::pair(16, 8));
}

}  // namespace
}  // namespace nanoserve
