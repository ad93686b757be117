// The products with reduced-precision activations (bf16, int8) against the double-precision product
// of the same weights (dequantized by formats/quant, bit-exact against gguf-py) and the float
// activations.
#include "backend/cpu/reduced_dot.h"
#include "backend/cpu/interleaved_q8_0.h"
#include "backend/cpu/cpu_backend.h"
#include "backend/backend.h"
#include "model/loader.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <random>
#include <tuple>

#include "backend/cpu/ops.h"
#include "formats/quant.h"
#include "test_support.h"
#include "util/error.h"

namespace nanoserve {
namespace {

// A product's shape: activation rows, weight rows (outputs), columns, and the weights' row stride.
// Plain names rather than structured bindings, which clang 14 cannot capture in a lambda.
struct Shape {
  int64_t rows, n, k, stride = 0;
};

struct QuantType {
  DType dtype;
  int64_t block_elems, block_bytes;
  int64_t act_block;               // activation values sharing one 8-bit scale
  double act_error;                // an activation's worst error, in steps of its block's scale
};

// Activations in Q8_0 blocks are off by half a step plus the float16 rounding of the step
// (127 * 2^-11 of one); the 256-value blocks keep a float step: half a step plus float rounding.
const QuantType kTypes[] = {
    {DType::Q8_0, 32, 34, 32, 0.57},
    {DType::Q4_0, 32, 18, 32, 0.57},
    {DType::Q4_K, 256, 144, 256, 0.501},
    {DType::Q6_K, 256, 210, 256, 0.501},
};

std::vector<uint8_t> random_blocks(const QuantType& type, int64_t blocks, std::mt19937& rng) {
  return test::random_blocks(type.dtype, blocks, rng);
}

void PrintTo(const QuantType& type, std::ostream* os) { *os << dtype_name(type.dtype); }

// multiply(x, rows, out), the product of x [rows, k] by w [n, k], batched and row by row: each row
// must give the same bits either way; then check(r, o, output) for every output.
template <typename Multiply, typename Check>
void each_output(const TensorView& w, const std::vector<float>& x, int64_t rows, Multiply multiply, Check check) {
  const int64_t n = w.shape[0], k = w.shape[1];
  std::vector<float> out(static_cast<size_t>(rows * n)), single(static_cast<size_t>(n));
  multiply(x.data(), rows, out.data());
  for (int64_t r = 0; r < rows; ++r) {
    multiply(x.data() + r * k, 1, single.data());
    for (int64_t o = 0; o < n; ++o) {
      ASSERT_EQ(out[static_cast<size_t>(r * n + o)], single[static_cast<size_t>(o)])
          << "row " << r << " depends on the batch";
      check(r, o, out[static_cast<size_t>(r * n + o)]);
    }
  }
}
// The same for cpu::linear.
template <typename Check>
void each_output(const TensorView& w, const std::vector<float>& x, int64_t rows, Check check) {
  each_output(
      w, x, rows,
      [&](const float* xs, int64_t count, float* out) {
        cpu::linear(xs, count, {w, {}, false}, out);
      },
      check);
}

// The activations as the kernels quantize them, widened back: per block, d = max|x| / 127 and
// q = round(x * by) to nearest even; Q8_0 blocks store d as float16 and take by = 1 / d before that
// rounding (ggml's reference), the 256-value blocks keep d as a float and take by = 127 / max.
std::vector<float> quantized(const QuantType& type, const std::vector<float>& x) {
  std::vector<float> out(x.size());
  for (size_t first = 0; first < x.size(); first += static_cast<size_t>(type.act_block)) {
    float amax = 0;
    for (size_t j = first; j < first + static_cast<size_t>(type.act_block); ++j) amax = std::max(amax, std::abs(x[j]));
    const float d = amax / 127.0f;
    const bool q8_0 = type.act_block == 32;
    const float by = d == 0 ? 0.0f : q8_0 ? 1.0f / d : 127.0f / amax;
    const float stored = q8_0 ? f16_to_float(float_to_f16(d)) : d;
    for (size_t j = first; j < first + static_cast<size_t>(type.act_block); ++j)
      out[j] = stored * std::nearbyint(x[j] * by);
  }
  return out;
}

class Int8Dot : public testing::TestWithParam<QuantType> {};

// Every output equals the product of the weights with the quantized activations (d_x * q_x) up to
// float rounding (1e-5 of the sum of |terms|: the integer sums are exact), and is within the bound
// 8-bit activations allow of the product with the float ones: each x is off by at most act_error
// steps d_x of its block (d_x = max|x| / 127 over the block), so an output is off by at most
// sum_i |w_i| * act_error * d_x(i). Each row gives the same bits alone or in a batch, and every tile
// shape (1-4 weight rows, 1-4 activation rows) is exercised.
TEST_P(Int8Dot, WithinTheBoundOfEightBitActivations) {
  const QuantType& type = GetParam();
  if (!cpu::takes_reduced_dot(type.dtype)) GTEST_SKIP() << "no AVX-512 VNNI here (or a narrower kernel level asked)";
  std::mt19937 rng(11);
  std::normal_distribution<float> dist(0, 1);
  const int64_t b = type.block_elems;
  for (const Shape& shape : {Shape{1, 7, 2 * b}, {5, 9, 8 * b}, {9, 33, 3 * b}, {70, 6, b}}) {
    const int64_t rows = shape.rows, n = shape.n, k = shape.k;
    const std::vector<uint8_t> wq = random_blocks(type, n * k / b, rng);
    std::vector<float> w(static_cast<size_t>(n * k)), x(static_cast<size_t>(rows * k));
    dequantize_row(ggml_type_of(type.dtype), wq.data(), w.data(), n * k);
    for (auto& v : x) v = dist(rng) * (1.0f + 10.0f * static_cast<float>(&v - x.data()) / static_cast<float>(x.size()));
    const std::vector<float> xq = quantized(type, x);
    const TensorView view{"w", type.dtype, {n, k}, wq.data(), wq.size()};
    each_output(view, x, rows, [&](int64_t r, int64_t o, float got) {
      double exact = 0, bound = 0, of_quantized = 0, magnitude = 0;
      for (int64_t i = 0; i < k; ++i) {
        const double wi = w[static_cast<size_t>(o * k + i)], xi = x[static_cast<size_t>(r * k + i)];
        exact += wi * xi;
        of_quantized += wi * xq[static_cast<size_t>(r * k + i)];
        magnitude += std::abs(wi * xq[static_cast<size_t>(r * k + i)]);
        const int64_t first = i / type.act_block * type.act_block;
        float amax = 0;
        for (int64_t j = first; j < first + type.act_block; ++j)
          amax = std::max(amax, std::abs(x[static_cast<size_t>(r * k + j)]));
        bound += std::abs(wi) * type.act_error * amax / 127 + 1e-6 * std::abs(wi * xi);
      }
      EXPECT_LE(std::abs(got - of_quantized), 1e-5 * magnitude)
          << rows << "x" << n << "x" << k << " row " << r << " output " << o;
      EXPECT_LE(std::abs(got - exact), bound) << rows << "x" << n << "x" << k << " row " << r << " output " << o;
    });
  }
}

// BF16 weights: each activation rounded to bf16 (to nearest even, off by at most 2^-8 of itself),
// so an output is within sum_i |w_i x_i| * 2^-8 of the float product, and equals the product with
// the rounded activations up to float rounding. Row lengths that are not a multiple of 32 take the
// masked tail: NaNs after the last row would poison its outputs if the tail were read whole.
TEST(Bf16Dot, WithinTheBoundOfBf16Activations) {
  if (!cpu::takes_reduced_dot(DType::BF16)) GTEST_SKIP() << "no AVX512_BF16 here (or the float32 path asked)";
  std::mt19937 rng(3);
  std::normal_distribution<float> dist(0, 1);
  for (const Shape& shape : {Shape{1, 7, 40}, {5, 9, 256}, {9, 33, 101}, {70, 6, 64}}) {
    const int64_t rows = shape.rows, n = shape.n, k = shape.k;
    std::vector<uint16_t> wb(static_cast<size_t>(n * k + 32), 0x7FC0);  // NaN past the matrix
    std::vector<float> x(static_cast<size_t>(rows * k));
    for (int64_t i = 0; i < n * k; ++i) wb[static_cast<size_t>(i)] = float_to_bf16(dist(rng));
    for (auto& v : x) v = dist(rng);
    const TensorView view{
        "w", DType::BF16, {n, k}, reinterpret_cast<const uint8_t*>(wb.data()), static_cast<size_t>(n * k) * 2};
    each_output(view, x, rows, [&](int64_t r, int64_t o, float got) {
      double exact = 0, of_rounded = 0, magnitude = 0;
      for (int64_t i = 0; i < k; ++i) {
        const double wi = bf16_to_float(wb[static_cast<size_t>(o * k + i)]), xi = x[static_cast<size_t>(r * k + i)];
        exact += wi * xi;
        of_rounded += wi * bf16_to_float(float_to_bf16(x[static_cast<size_t>(r * k + i)]));
        magnitude += std::abs(wi * xi);
      }
      EXPECT_LE(std::abs(got - of_rounded), 1e-5 * magnitude)
          << rows << "x" << n << "x" << k << " row " << r << " output " << o;
      EXPECT_LE(std::abs(got - exact), std::ldexp(magnitude, -8)) << rows << "x" << n << "x" << k << " row " << r;
    });
  }
}

// Q8_0 weights interleaved 16 rows at a time: every output equals the product of the weights with
// the quantized activations up to float rounding (2e-6 of the sum of |terms|: each block's integer
// sum is exact before it is scaled), and each row gives the same bits alone or in a batch.
// The shapes take a group's missing rows (n not a multiple of 16), an odd count of blocks (the
// last pair padded), every tile width (1-8 activation rows, and past the 64-row activation block),
// and a column range of a wider matrix (a row stride, as a tensor-parallel shard has).
TEST(InterleavedQ8_0, GivesTheProductOfTheQuantizedActivations) {
  if (!cpu::takes_reduced_dot(DType::Q8_0)) GTEST_SKIP() << "no AVX-512 VNNI here (or a narrower kernel level asked)";
  const QuantType& type = kTypes[0];
  std::mt19937 rng(5);
  std::normal_distribution<float> dist(0, 1);
  for (const Shape& shape :
       {Shape{1, 7, 64, 64}, {5, 40, 96, 96}, {9, 33, 256, 256}, {70, 16, 32, 32}, {13, 20, 128, 192}}) {
    const int64_t rows = shape.rows, n = shape.n, k = shape.k, stride = shape.stride;
    const std::vector<uint8_t> wq = random_blocks(type, n * stride / 32, rng);
    const TensorView whole{"w", DType::Q8_0, {n, stride}, wq.data(), wq.size()};
    const TensorView view = columns_of(whole, stride - k, k);
    std::vector<float> x(static_cast<size_t>(rows * k)), w(static_cast<size_t>(n * stride));
    for (auto& v : x) v = dist(rng);
    dequantize_row(GgmlType::Q8_0, wq.data(), w.data(), n * stride);
    const std::vector<float> xq = quantized(type, x);
    const cpu::InterleavedQ8_0 interleaved(view);
    EXPECT_EQ(interleaved.rows(), n);
    EXPECT_EQ(interleaved.columns(), k);
    each_output(
        view, x, rows, [&](const float* xs, int64_t count, float* out) { interleaved.multiply(xs, count, out); },
        [&](int64_t r, int64_t o, float got) {
          double of_quantized = 0, magnitude = 0;
          for (int64_t i = 0; i < k; ++i) {
            const double term =
                w[static_cast<size_t>(o * stride + stride - k + i)] * xq[static_cast<size_t>(r * k + i)];
            of_quantized += term;
            magnitude += std::abs(term);
          }
          EXPECT_NEAR(got, of_quantized, 2e-6 * magnitude)
              << rows << "x" << n << "x" << k << " row " << r << " output " << o;
        });
  }
}

// The CPU backend multiplies a model's Q8_0 products through their interleaved copies (the bits of
// InterleavedQ8_0, plus the bias), the LM head and a layer's alike.
TEST(InterleavedQ8_0, TheCpuBackendMultipliesAModelsQ8_0WeightsThroughIt) {
  if (!cpu::takes_reduced_dot(DType::Q8_0)) GTEST_SKIP() << "no AVX-512 VNNI here (or a narrower kernel level asked)";
  std::mt19937 rng(9);
  std::normal_distribution<float> dist(0, 1);
  const int64_t n = 24, k = 64, rows = 3;
  const std::vector<uint8_t> head_q = random_blocks(kTypes[0], n * k / 32, rng),
                             q_q = random_blocks(kTypes[0], n * k / 32, rng);
  std::vector<float> bias(static_cast<size_t>(n)), x(static_cast<size_t>(rows * k));
  for (auto& v : bias) v = dist(rng);
  for (auto& v : x) v = dist(rng);
  Model model;
  model.weights.lm_head.weight = {"lm_head", DType::Q8_0, {n, k}, head_q.data(), head_q.size()};
  model.weights.layers.resize(1);
  Linear& q = model.weights.layers[0].q;
  q = {{"layers.0.attn.q", DType::Q8_0, {n, k}, q_q.data(), q_q.size()},
       {"layers.0.attn.q.bias", DType::F32, {n}, reinterpret_cast<const uint8_t*>(bias.data()), bias.size() * 4}};
  number_weights(model.weights);
  const auto backend = make_cpu_backend(model);
  for (const Linear& layer : {model.weights.lm_head, q}) {
    std::vector<float> got(static_cast<size_t>(rows * n)), expected(got.size());
    backend->linear(x.data(), rows, layer, got.data());
    cpu::InterleavedQ8_0(layer.weight).multiply(x.data(), rows, expected.data());
    for (int64_t r = 0; r < rows; ++r) {
      for (int64_t o = 0; o < n; ++o)
        expected[static_cast<size_t>(r * n + o)] += layer.bias.data ? bias[static_cast<size_t>(o)] : 0;
    }
    EXPECT_EQ(got, expected) << layer.weight.name;
  }
}

TEST(InterleavedQ8_0, RefusesWhatItCannotLayOut) {
  const std::vector<uint8_t> bytes(34 * 4);
  const TensorView q4{"blk.0.attn_q.weight", DType::Q4_0, {2, 64}, bytes.data(), bytes.size()};
  try {
    const cpu::InterleavedQ8_0 interleaved(q4);
    FAIL() << "a Q4_0 matrix was interleaved as Q8_0";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("blk.0.attn_q.weight: Q4_0 [2, 64] cannot be interleaved"), std::string::npos)
        << e.what();
  }
}

INSTANTIATE_TEST_SUITE_P(Types, Int8Dot, testing::ValuesIn(kTypes), [](const testing::TestParamInfo<QuantType>& info) {
  return std::string(dtype_name(info.param.dtype));
});

}  // namespace
}  // namespace nanoserve
