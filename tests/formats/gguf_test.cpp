#include "formats/gguf.h"

#include <gtest/gtest.h>

#include <cstring>
#include <map>
#include <nlohmann/json.hpp>
#include <set>

#include "formats/dtype.h"
#include "formats/gguf_writer.h"
#include "formats/quant.h"
#include "gguf_builder.h"
#include "test_support.h"
#include "util/error.h"

namespace nanoserve {
namespace {

GgufContents parse(const std::string& image) {
  return parse_gguf(reinterpret_cast<const uint8_t*>(image.data()), image.size());
}

std::string error_of(const std::string& image) {
  try {
    parse(image);
  } catch (const Error& e) {
    return e.what();
  }
  return "(no error)";
}

// Every value type, a nested array, and two tensors (f32 and q8_0) at aligned offsets.
std::string valid_image() {
  test::GgufBuilder b;
  b.kv("general.architecture", 8).str("llama");
  b.kv("llama.block_count", 4).u32(8);
  b.kv("llama.attention.layer_norm_rms_epsilon", 6).f32(1e-5f);
  b.kv("flag", 7).u8(1);
  b.kv("big", 10).u64(uint64_t{1} << 40);
  b.kv("tokens", 9).u32(8).u64(2).str("a").str("bc");
  b.kv("nested", 9).u32(9).u64(1).u32(5).u64(2).u32(7).u32(UINT32_MAX);  // [[7, -1]] as int32
  b.tensor("norm", {4}, 0, 0);
  b.tensor("w", {32, 2}, 8, 32);
  std::string data(32 + 2 * 34, '\0');
  const float ones[4] = {1, 1, 1, 1};
  std::memcpy(data.data(), ones, 16);
  return b.finish(data);
}

TEST(Gguf, ReadsEveryValueTypeAndTensor) {
  const std::string image = valid_image();
  const GgufContents c = parse(image);
  EXPECT_EQ(c.version, 3u);
  EXPECT_EQ(c.find("general.architecture")->string, "llama");
  EXPECT_EQ(c.find("llama.block_count")->uint_value, 8u);
  EXPECT_FLOAT_EQ(static_cast<float>(c.find("llama.attention.layer_norm_rms_epsilon")->float_value), 1e-5f);
  EXPECT_TRUE(c.find("flag")->bool_value);
  EXPECT_EQ(c.find("big")->uint_value, uint64_t{1} << 40);
  EXPECT_EQ(c.find("tokens")->array.at(1).string, "bc");
  EXPECT_EQ(c.find("nested")->type_name(), "array[array]");
  EXPECT_EQ(c.find("nested")->array.at(0).array.at(1).int_value, -1);
  ASSERT_EQ(c.tensors.size(), 2u);
  EXPECT_EQ(c.tensor("w")->type, GgmlType::Q8_0);
  EXPECT_EQ(c.tensor("w")->bytes, 68u);
  EXPECT_EQ(c.tensor("w")->elements(), 64u);
  float norm[4];
  dequantize_row(GgmlType::F32, c.tensor("norm")->data, norm, 4);
  EXPECT_EQ(norm[3], 1.0f);
}

TEST(Gguf, EveryTruncationIsAnError) {
  const std::string image = valid_image();
  for (size_t n = 0; n < image.size(); ++n)
    EXPECT_THROW(parse(image.substr(0, n)), Error) << "prefix of " << n << " bytes";
}

TEST(Gguf, BadFilesGetErrorsNamingTheProblem) {
  auto expect = [](const std::string& image, const std::string& message) {
    const std::string error = error_of(image);
    EXPECT_NE(error.find(message), std::string::npos) << "got: " << error;
  };
  std::string image = valid_image();
  image[0] = 'X';
  expect(image, "not a GGUF file");
  expect(test::GgufBuilder(1).finish(), "GGUF version 1 is not supported");
  expect(test::GgufBuilder(0x03000000).finish(), "the file is big-endian");
  expect(test::GgufBuilder(4).finish(), "GGUF version 4 is not supported");
  {  // counts no file could hold
    std::string huge = test::GgufBuilder().finish();
    const uint64_t n = uint64_t{1} << 60;
    std::memcpy(huge.data() + 16, &n, 8);
    expect(huge, "metadata count 1152921504606846976 does not fit");
    std::memcpy(huge.data() + 16, "\0\0\0\0\0\0\0\0", 8);
    std::memcpy(huge.data() + 8, &n, 8);
    expect(huge, "tensor count 1152921504606846976 does not fit");
  }
  {
    test::GgufBuilder b;
    b.kv("s", 8).u64(uint64_t{1} << 50);
    expect(b.finish(), "metadata 's': truncated");
  }
  {
    test::GgufBuilder b;
    b.kv("a", 9).u32(4).u64(uint64_t{1} << 50);
    expect(b.finish(), "array of 1125899906842624 uint32 elements does not fit");
  }
  {
    test::GgufBuilder b;
    b.kv("t", 13).u32(0);
    expect(b.finish(), "metadata 't': value type 13 is not a GGUF value type");
  }
  {
    test::GgufBuilder b;
    b.kv("general.alignment", 8).str("32");
    expect(b.finish(), "general.alignment is string, expected uint32");
  }
  {
    test::GgufBuilder b;
    b.kv("general.alignment", 4).u32(24);
    expect(b.finish(), "general.alignment 24 is not a power of two");
  }
  {
    test::GgufBuilder b;
    b.kv("k", 4).u32(1).kv("k", 4).u32(2);
    expect(b.finish(), "metadata 'k': the key appears twice");
  }
  {
    test::GgufBuilder b;
    b.tensor("w", {32}, 99, 0);
    expect(b.finish(std::string(64, '\0')), "tensor 'w': type 99 is no ggml type");
  }
  {
    test::GgufBuilder b;
    b.tensor("w", {16, 2}, 8, 0);
    expect(b.finish(std::string(64, '\0')), "tensor 'w': row length 16 is not a multiple of q8_0's block of 32");
  }
  {
    test::GgufBuilder b;
    b.tensor("w", {1, 1, 1, 1, 1}, 0, 0);
    expect(b.finish(std::string(64, '\0')), "tensor 'w' has 5 dimensions");
  }
  {
    test::GgufBuilder b;
    b.tensor("w", {32, 4}, 0, 0);  // 512 bytes, 64 there
    expect(b.finish(std::string(64, '\0')),
           "tensor 'w': bytes [0, 512) of the data section lie past its end (64 bytes)");
  }
  {
    test::GgufBuilder b;
    b.tensor("w", {4}, 0, 8);
    expect(b.finish(std::string(64, '\0')), "tensor 'w': offset 8 is not a multiple of the alignment 32");
  }
  {
    test::GgufBuilder b;
    b.tensor("w", {uint64_t{1} << 40, uint64_t{1} << 40}, 0, 0);
    expect(b.finish(std::string(64, '\0')), "overflow");
  }
}

TEST(Gguf, InspectShowsMetadataAndTensors) {
  test::ScratchDir dir;
  test::write_file(dir.file("m.gguf"), valid_image());
  // Not a model (no hyperparameters): the file's contents still print before the error.
  const auto r = test::run_cli({"inspect", "-m", dir.file("m.gguf")});
  EXPECT_NE(r.exit_code, 0);
  EXPECT_NE(r.err.find("m.gguf: metadata llama.embedding_length is missing"), std::string::npos) << r.err;
  EXPECT_NE(r.out.find("GGUF version 3, 7 metadata entries, 2 tensors"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("tokens                                   array[string]   [\"a\", \"bc\"]"), std::string::npos)
      << r.out;
  EXPECT_NE(r.out.find("w                                q8_0    [32, 2] 68 bytes"), std::string::npos) << r.out;
  std::string broken = valid_image();
  broken.resize(200);
  test::write_file(dir.file("broken.gguf"), broken);
  const auto bad = test::run_cli({"inspect", "-m", dir.file("broken.gguf")});
  EXPECT_NE(bad.exit_code, 0);
  EXPECT_NE(bad.err.find("broken.gguf: truncated at byte"), std::string::npos) << bad.err;
}

TEST(Gguf, InspectShowsHowAModelRuns) {
  const auto r = test::run_cli({"inspect", "-m", test::fixture("gguf/llama32/model.gguf")});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.out.find("llama.rope.freq_base                     float32         10000"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("rope          theta 10000, scaling per-frequency factors [1, 3.3, 8, 8, 8, 8, 8, 8], "
                       "interleaved pairs"),
            std::string::npos)
      << r.out;
  EXPECT_NE(r.out.find("layers.1.attn.k                blk.1.attn_k.weight"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("-                              rope_freqs.weight"), std::string::npos) << r.out;
}

// Bit for bit what gguf-py (llama.cpp's reference) gives, for every type: random blocks (all quant
// bit patterns) and the first rows of the demo model's q4_k_m, q8_0 and q4_0 files.
TEST(Dequantize, EveryTypeMatchesGgufPyBitForBit) {
  const auto fixture = nlohmann::json::parse(test::read_file(test::fixture("gguf/dequant.json")));
  std::map<std::string, GgmlType> types;
  for (uint32_t id = 0; id < 40; ++id) {
    if (const GgmlTypeInfo* info = ggml_type_info(id); info && info->dequantizable)
      types[std::string(info->name)] = static_cast<GgmlType>(id);
  }
  std::set<std::string> covered;
  for (const auto& e : fixture["entries"]) {
    const std::string type = e["type"], hex = e["blocks_hex"];
    ASSERT_TRUE(types.count(type)) << type;
    std::vector<uint8_t> blocks(hex.size() / 2);
    for (size_t i = 0; i < blocks.size(); ++i)
      blocks[i] = static_cast<uint8_t>(std::stoi(hex.substr(2 * i, 2), nullptr, 16));
    const auto expected = e["float_bits"].get<std::vector<uint32_t>>();
    std::vector<float> got(expected.size());
    dequantize_row(types[type], blocks.data(), got.data(), static_cast<int64_t>(got.size()));
    size_t mismatches = 0;
    for (size_t i = 0; i < got.size(); ++i) {
      uint32_t bits;
      std::memcpy(&bits, &got[i], 4);
      mismatches += bits != expected[i];
    }
    EXPECT_EQ(mismatches, 0u) << type << " from " << e["source"];
    covered.insert(type);
  }
  EXPECT_EQ(covered.size(), types.size() - 1) << "every dequantizable type but f32 has reference blocks";
}

TEST(Dequantize, UnreadableTypeIsAnError) {
  uint8_t block[84] = {};
  float out[256];
  EXPECT_THROW(dequantize_row(GgmlType::Q2_K, block, out, 256), Error);
}

}  // namespace
}  // namespace nanoserve

namespace nanoserve {
namespace {

// Every half (but NaNs) survives float and back; midpoints round to even, as F16C does.
TEST(Float16, RoundTripAndRoundToNearestEven) {
  for (uint32_t bits = 0; bits < 0x10000; ++bits) {
    const auto h = static_cast<uint16_t>(bits);
    if ((h & 0x7c00) == 0x7c00 && (h & 0x3ff)) continue;
    ASSERT_EQ(float_to_f16(f16_to_float(h)), h) << bits;
  }
  EXPECT_EQ(float_to_f16(1.0f + 0x1p-11f), 0x3c00);      // halfway between 1 and 1 + 2^-10: even (1)
  EXPECT_EQ(float_to_f16(1.0f + 3 * 0x1p-11f), 0x3c02);  // halfway between odd and even: up to even
  EXPECT_EQ(float_to_f16(0x1p-25f), 0x0000);             // half the smallest subnormal: even (0)
  EXPECT_EQ(float_to_f16(3 * 0x1p-25f), 0x0002);         // 1.5 subnormal steps: 2
  EXPECT_EQ(float_to_f16(65520.0f), 0x7c00);             // rounds past 65504: inf
  EXPECT_EQ(float_to_f16(-65504.0f), 0xfbff);
}

// ggml's reference Q8_0: d = max|x| / 127 (kept as float16), q = round half away from zero.
TEST(Quantize, Q8_0AsGgmlReference) {
  std::vector<float> x(64);
  for (int i = 0; i < 32; ++i) x[i] = static_cast<float>(i) - 15.5f;  // max |x| 15.5
  x[31] = 127.0f;                                                     // now d = 1 exactly
  for (int i = 32; i < 64; ++i) x[i] = 0.0f;                          // an all-zero block: d = 0
  std::vector<uint8_t> blocks(68);
  quantize_row_q8_0(x.data(), blocks.data(), 64);
  uint16_t d;
  std::memcpy(&d, blocks.data(), 2);
  EXPECT_EQ(d, 0x3c00);
  EXPECT_EQ(static_cast<int8_t>(blocks[2 + 0]), -16);  // -15.5 rounds away from zero
  EXPECT_EQ(static_cast<int8_t>(blocks[2 + 15]), -1);  // -0.5 as well
  EXPECT_EQ(static_cast<int8_t>(blocks[2 + 16]), 1);   // 0.5
  EXPECT_EQ(static_cast<int8_t>(blocks[2 + 31]), 127);
  std::vector<float> back(64);
  dequantize_row(GgmlType::Q8_0, blocks.data(), back.data(), 64);
  EXPECT_EQ(back[31], 127.0f);
  EXPECT_EQ(back[40], 0.0f);
  // Random rows: every value within half a step of the original, plus what rounding d to float16
  // (relative 2^-11) costs at up to 127 steps: 0.5 + 127 * 2^-11 < 0.57 steps.
  std::vector<float> row(4096);
  for (size_t i = 0; i < row.size(); ++i)
    row[i] = std::sin(static_cast<float>(i) * 0.37f) * static_cast<float>(1 + i % 7);
  std::vector<uint8_t> q(row.size() / 32 * 34);
  quantize_row_q8_0(row.data(), q.data(), static_cast<int64_t>(row.size()));
  std::vector<float> restored(row.size());
  dequantize_row(GgmlType::Q8_0, q.data(), restored.data(), static_cast<int64_t>(row.size()));
  for (size_t b = 0; b < row.size() / 32; ++b) {
    float amax = 0;
    for (size_t j = 0; j < 32; ++j) amax = std::max(amax, std::abs(row[b * 32 + j]));
    for (size_t j = 0; j < 32; ++j) ASSERT_LE(std::abs(restored[b * 32 + j] - row[b * 32 + j]), amax / 127 * 0.57f);
  }
}

// The plain K-quant rounding read back by the dequantizer: each value within its group's step of the
// original (half a step of rounding, plus what the 6- or 8-bit scales cost at the grid's ends), and
// the row's RMS error near the step's uniform-rounding share. A packing error misses by whole steps
// on most values. Steps: Q4_K a sub-block of 32's range (from min(0, x)) over 15; Q6_K a group of
// 16's max|x| over 31. Groups of every sign mix and scale, and an all-zero block.
TEST(Quantize, Q4_KAndQ6_KRoundTripWithinTheirSteps) {
  std::vector<float> row(4096);
  for (size_t i = 0; i < row.size(); ++i) {
    row[i] = std::sin(static_cast<float>(i) * 0.37f) * static_cast<float>(1 + i / 96 % 9) + (i / 512 % 2 ? 0.7f : 0);
  }
  std::fill(row.begin() + 1024, row.begin() + 1280, 0.0f);
  struct Case {
    GgmlType type;
    void (*quantize)(const float*, uint8_t*, int64_t);
    int64_t block_bytes, group;
    double max_steps, rms_steps;
  };
  for (const Case c : {Case{GgmlType::Q4_K, quantize_row_q4_k, 144, 32, 1.0, 0.35},
                       Case{GgmlType::Q6_K, quantize_row_q6_k, 210, 16, 1.0, 0.35}}) {
    std::vector<uint8_t> q(row.size() / 256 * static_cast<size_t>(c.block_bytes));
    c.quantize(row.data(), q.data(), static_cast<int64_t>(row.size()));
    std::vector<float> back(row.size());
    dequantize_row(c.type, q.data(), back.data(), static_cast<int64_t>(row.size()));
    double squares = 0, step_squares = 0;
    for (size_t g = 0; g < row.size() / static_cast<size_t>(c.group); ++g) {
      const float* x = row.data() + g * c.group;
      const float lo = std::min(0.0f, *std::min_element(x, x + c.group)), hi = *std::max_element(x, x + c.group);
      const float amax = std::max(std::abs(lo), std::abs(hi));
      const double step = c.type == GgmlType::Q4_K ? (hi - lo) / 15.0 : amax / 31.0;
      for (int64_t l = 0; l < c.group; ++l) {
        const double error = std::abs(back[g * c.group + l] - x[l]);
        ASSERT_LE(error, c.max_steps * step + 1e-7)
            << (c.type == GgmlType::Q4_K ? "Q4_K" : "Q6_K") << " value " << g * c.group + l;
        squares += error * error;
        step_squares += step * step;
      }
    }
    EXPECT_LE(std::sqrt(squares / step_squares), c.rms_steps) << (c.type == GgmlType::Q4_K ? "Q4_K" : "Q6_K");
  }
}

}  // namespace
}  // namespace nanoserve

namespace nanoserve {
namespace {

// What GgufWriter writes, the parser reads back: metadata of each type, tensors (dimensions
// reversed on disk, data aligned).
TEST(GgufWriter, RoundTripsThroughTheParser) {
  test::ScratchDir dir;
  GgufWriter w;
  w.add_string("general.architecture", "llama");
  w.add_u32("llama.block_count", 3);
  w.add_f32("llama.rope.freq_base", 500000.0f);
  w.add_bool("flag", true);
  w.add_strings("tokens", {"a", "", "ccc"});
  w.add_i32s("types", {1, -3});
  w.add_f32s("scores", {0.5f});
  const float norm[3] = {1, 2, 3};
  std::vector<uint8_t> q8(2 * 34, 7);
  w.add_tensor("norm", GgmlType::F32, {3}, norm, sizeof norm);
  w.add_tensor("w", GgmlType::Q8_0, {2, 32}, q8.data(), q8.size());
  w.write(dir.file("m.gguf"));
  const GgufFile file(dir.file("m.gguf"));
  const GgufContents& c = file.contents();
  EXPECT_EQ(c.version, 3u);
  EXPECT_EQ(c.find("general.architecture")->string, "llama");
  EXPECT_EQ(c.find("llama.block_count")->uint_value, 3u);
  EXPECT_EQ(c.find("llama.rope.freq_base")->float_value, 500000.0);
  EXPECT_TRUE(c.find("flag")->bool_value);
  ASSERT_EQ(c.find("tokens")->array.size(), 3u);
  EXPECT_EQ(c.find("tokens")->array[2].string, "ccc");
  EXPECT_EQ(c.find("types")->array[1].int_value, -3);
  EXPECT_EQ(c.find("scores")->array[0].float_value, 0.5);
  ASSERT_EQ(c.tensors.size(), 2u);
  EXPECT_EQ(c.tensors[1].dims, (std::vector<uint64_t>{32, 2}));
  EXPECT_EQ(c.tensors[1].offset % 32, 0u);
  float back[3];
  std::memcpy(back, c.tensors[0].data, sizeof back);
  EXPECT_EQ(back[2], 3.0f);
  EXPECT_EQ(c.tensors[1].data[67], 7);
  EXPECT_THROW(w.write(dir.file("no/such/dir/m.gguf")), Error);
}

}  // namespace
}  // namespace nanoserve
