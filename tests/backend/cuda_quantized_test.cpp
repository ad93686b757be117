// GGUF's quantized blocks kept as stored on the GPU (backend/cuda/quantized.cu): each block type's
// products and embedding rows against the CPU's decoding of the same blocks, and a Q4_K_M file's
// logits against the CPU's on that file. Skips without a GPU.
#include <fmt/format.h>
#include <gtest/gtest.h>

#include <cmath>
#include <random>
#include <string>
#include <vector>

#include "backend/backend.h"
#include "backend/cpu/ops.h"
#include "backend/device_array.h"
#include "model/loader.h"
#include "model/transformer.h"
#include "test_support.h"

namespace nanoserve {
namespace {

std::vector<float> download(Backend& backend, const Buffer& buffer) {
  std::vector<float> host(buffer.bytes() / sizeof(float));
  backend.download(buffer.data(), buffer.bytes(), host.data());
  return host;
}

// Every row of a quantized view, decoded on the CPU: [rows, cols].
std::vector<float> decoded(const TensorView& view) {
  std::vector<float> out(static_cast<size_t>(view.numel()));
  for (int64_t r = 0; r < view.shape[0]; ++r) cpu::load_row(view, r, out.data() + r * view.shape[1]);
  return out;
}

struct Expected {
  double value, bound;  // the exact product, and the sum of |w x| its rounding scales with
};

Expected product(const std::vector<float>& w, const std::vector<float>& x, int64_t row, int64_t feature, int64_t cols) {
  Expected e{0, 0};
  for (int64_t c = 0; c < cols; ++c) {
    const double term =
        static_cast<double>(w[static_cast<size_t>(feature * cols + c)]) * x[static_cast<size_t>(row * cols + c)];
    e.value += term;
    e.bound += std::abs(term);
  }
  return e;
}

double silu(double v) { return v / (1 + std::exp(-v)); }

// Up to two activation rows, the blocks are decoded in registers and multiply float activations,
// summed in float: within 1e-5 of the sums' magnitude. Beyond, the matrix is widened to bf16 and
// multiplies activations rounded to bf16 on the tensor cores (2^-9 relative each): 4e-3. q/k/v-like
// products of one input go in one launch (two targets here), gate and up in a gated one. Embedding
// rows are the CPU's decoding bit for bit (the same float operations, unfused).
void check_products_and_rows(DType type, int64_t features, int64_t cols) {
  std::mt19937 rng(11);
  const int64_t blocks = features * cols / dtype_block_elems(type);
  const std::vector<uint8_t> a = test::random_blocks(type, blocks, rng), b = test::random_blocks(type, blocks, rng);
  WeightSet set;
  set.token_embed = {"a", type, {features, cols}, a.data(), a.size()};
  set.linears = {{set.token_embed, {}, false, 0}, {{"b", type, {features, cols}, b.data(), b.size()}, {}, false, 1}};
  const std::vector<float> wa = decoded(set.linears[0].weight), wb = decoded(set.linears[1].weight);
  const auto backend = make_backend("cuda", set);
  std::normal_distribution<float> normal(0, 1);
  for (int64_t rows : {1, 2, 5}) {
    std::vector<float> x(static_cast<size_t>(rows * cols));
    for (float& v : x) v = normal(rng);
    const Buffer input = backend->floats(rows * cols), out_a = backend->floats(rows * features),
                 out_b = backend->floats(rows * features), gated = backend->floats(rows * features);
    backend->upload(x.data(), x.size() * sizeof(float), input.data());
    const Linear* both[] = {&set.linears[0], &set.linears[1]};
    float* const outs[] = {out_a.floats(), out_b.floats()};
    backend->linears(input.floats(), rows, both, outs);
    backend->gated_linear(input.floats(), rows, set.linears[0], set.linears[1], Activation::Silu, gated.floats());
    const auto got_a = download(*backend, out_a), got_b = download(*backend, out_b), got_g = download(*backend, gated);
    const double tolerance = rows <= 2 ? 1e-5 : 4e-3;
    for (int64_t r = 0; r < rows; ++r) {
      for (int64_t f = 0; f < features; ++f) {
        const Expected ea = product(wa, x, r, f, cols), eb = product(wb, x, r, f, cols);
        const auto i = static_cast<size_t>(r * features + f);
        ASSERT_NEAR(got_a[i], ea.value, tolerance * ea.bound)
            << dtype_name(type) << " rows " << rows << " feature " << f;
        ASSERT_NEAR(got_b[i], eb.value, tolerance * eb.bound)
            << dtype_name(type) << " rows " << rows << " feature " << f;
        ASSERT_NEAR(got_g[i], silu(ea.value) * eb.value,
                    tolerance * (1.1 * ea.bound * std::abs(eb.value) + eb.bound * std::abs(silu(ea.value))) + 1e-6)
            << dtype_name(type) << " rows " << rows << " gated feature " << f;
      }
    }
  }
  const std::vector<int32_t> table = {0};
  StepLayout layout;
  layout.tokens = 3;
  layout.token_ids = {5, 71, -1};
  layout.positions = {0, 1, 2};
  layout.sequences = {{0, 3, 0, table}};
  const Step step = backend->begin_step(layout, 0);
  const Buffer rows = backend->floats(3 * cols);  // [3, cols]
  backend->embed(Backend::Ids::Tokens, rows.floats());
  const auto got = download(*backend, rows);
  EXPECT_EQ(std::vector<float>(got.begin(), got.begin() + cols),
            std::vector<float>(wa.begin() + 5 * cols, wa.begin() + 6 * cols));
  EXPECT_EQ(std::vector<float>(got.begin() + cols, got.begin() + 2 * cols),
            std::vector<float>(wa.begin() + 71 * cols, wa.begin() + 72 * cols));
  EXPECT_EQ(std::vector<float>(got.begin() + 2 * cols, got.end()), std::vector<float>(static_cast<size_t>(cols), 0.0f));
}

class CudaQuantized : public ::testing::TestWithParam<DType> {};

// 72 features leave a block partial and take 8 warps each; 1024, 2048 and 4096 take 4, 2 and 1.
TEST_P(CudaQuantized, ProductsAndRowsMatchTheCpusDecoding) {
  if (!gpu_usable()) GTEST_SKIP() << "no CUDA GPU here";
  for (const auto& [features, cols] : {std::pair<int64_t, int64_t>{72, 768}, {1024, 512}, {2048, 256}, {4096, 256}}) {
    SCOPED_TRACE(fmt::format("{} features of {} columns", features, cols));
    check_products_and_rows(GetParam(), features, cols);
  }
}

INSTANTIATE_TEST_SUITE_P(Types, CudaQuantized,
                         ::testing::Values(DType::Q8_0, DType::Q4_0, DType::Q4_K, DType::Q5_K, DType::Q6_K),
                         [](const auto& info) { return std::string(dtype_name(info.param)); });

// The demo's Q4_K_M file (Q4_K and Q6_K blocks, the embedding tied to the LM head) runs from its
// blocks on the GPU. Its logits agree with the CPU's on the same file, for a prompt (widened to
// bf16: the half-precision tolerance of cuda_backend_test) and for decode steps (decoded in
// registers), where the CPU's own int8 activations keep the agreement at the same few percent.
TEST(CudaQuantizedModel, AQ4KMFileRunsFromItsBlocksAsOnTheCpu) {
  if (!gpu_usable()) GTEST_SKIP() << "no CUDA GPU here";
  const Model model = load_model(test::demo_model_dir() + "/demo-q4_k_m.gguf");
  ASSERT_EQ(model.weights.layers[0].q.weight.dtype, DType::Q4_K);
  const auto cpu = make_backend("cpu", model), gpu = make_backend("cuda", model);
  const Transformer on_cpu(model, cpu.get()), on_gpu(model, gpu.get());
  std::vector<int32_t> prompt(40);
  for (size_t i = 0; i < prompt.size(); ++i) prompt[i] = static_cast<int32_t>(100 + 37 * i % 3000);
  SequenceCache cpu_cache = on_cpu.new_cache(64), gpu_cache = on_gpu.new_cache(64);
  auto expected = on_cpu.forward(prompt, cpu_cache, LogitsFor::AllTokens);
  auto got = on_gpu.forward(prompt, gpu_cache, LogitsFor::AllTokens);
  for (int step = 0; step < 8; ++step) {
    float scale = 1;
    for (float v : expected) scale = std::max(scale, std::abs(v));
    ASSERT_EQ(got.size(), expected.size());
    EXPECT_LE(test::max_abs_diff(got.data(), expected.data(), got.size()), 4e-2f * scale) << "step " << step;
    const int32_t next[1] = {
        static_cast<int32_t>(std::max_element(expected.end() - model.config.vocab_size, expected.end()) -
                             (expected.end() - model.config.vocab_size))};
    expected = on_cpu.forward(next, cpu_cache, LogitsFor::LastToken);
    got = on_gpu.forward(next, gpu_cache, LogitsFor::LastToken);
  }
}

}  // namespace
}  // namespace nanoserve
