#include "formats/gguf.h"

#include <gtest/gtest.h>

#include <cstring>
#include <map>
#include <nlohmann/json.hpp>
#include <set>

#include "formats/quant.h"
#include "test_support.h"
#include "util/error.h"

namespace nanoserve {
namespace {

// Builds GGUF images byte by byte, so that each test can break exactly one thing.
class GgufBuilder {
 public:
  explicit GgufBuilder(uint32_t version = 3) {
    u32(0x46554747);
    u32(version);
    counts_at_ = bytes_.size();
    u64(0);  // tensor count, patched by finish()
    u64(0);  // metadata count
  }
  GgufBuilder& u8(uint8_t v) { return raw(&v, 1); }
  GgufBuilder& u32(uint32_t v) { return raw(&v, 4); }
  GgufBuilder& u64(uint64_t v) { return raw(&v, 8); }
  GgufBuilder& f32(float v) { return raw(&v, 4); }
  GgufBuilder& str(const std::string& s) { return u64(s.size()).raw(s.data(), s.size()); }
  GgufBuilder& raw(const void* p, size_t n) {
    bytes_.append(static_cast<const char*>(p), n);
    return *this;
  }
  GgufBuilder& kv(const std::string& key, uint32_t type) {  // the value follows
    ++kvs_;
    return str(key).u32(type);
  }
  GgufBuilder& tensor(const std::string& name, std::vector<uint64_t> dims, uint32_t type, uint64_t offset) {
    ++tensors_;
    str(name).u32(static_cast<uint32_t>(dims.size()));
    for (uint64_t d : dims) u64(d);
    return u32(type).u64(offset);
  }
  // Pads to the alignment and appends the data section.
  std::string finish(const std::string& data = "", size_t alignment = 32) {
    std::string out = bytes_;
    std::memcpy(out.data() + counts_at_, &tensors_, 8);
    std::memcpy(out.data() + counts_at_ + 8, &kvs_, 8);
    out.resize((out.size() + alignment - 1) / alignment * alignment, '\0');
    return out + data;
  }

 private:
  std::string bytes_;
  size_t counts_at_;
  uint64_t tensors_ = 0, kvs_ = 0;
};

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
  GgufBuilder b;
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
  for (size_t n = 0; n < image.size(); ++n) EXPECT_THROW(parse(image.substr(0, n)), Error) << "prefix of " << n << " bytes";
}

TEST(Gguf, BadFilesGetErrorsNamingTheProblem) {
  auto expect = [](const std::string& image, const std::string& message) {
    const std::string error = error_of(image);
    EXPECT_NE(error.find(message), std::string::npos) << "got: " << error;
  };
  std::string image = valid_image();
  image[0] = 'X';
  expect(image, "not a GGUF file");
  expect(GgufBuilder(1).finish(), "GGUF version 1 is not supported");
  expect(GgufBuilder(0x03000000).finish(), "the file is big-endian");
  expect(GgufBuilder(4).finish(), "GGUF version 4 is not supported");
  {  // counts no file could hold
    std::string huge = GgufBuilder().finish();
    const uint64_t n = uint64_t{1} << 60;
    std::memcpy(huge.data() + 16, &n, 8);
    expect(huge, "metadata count 1152921504606846976 does not fit");
    std::memcpy(huge.data() + 16, "\0\0\0\0\0\0\0\0", 8);
    std::memcpy(huge.data() + 8, &n, 8);
    expect(huge, "tensor count 1152921504606846976 does not fit");
  }
  {
    GgufBuilder b;
    b.kv("s", 8).u64(uint64_t{1} << 50);
    expect(b.finish(), "metadata 's': truncated");
  }
  {
    GgufBuilder b;
    b.kv("a", 9).u32(4).u64(uint64_t{1} << 50);
    expect(b.finish(), "array of 1125899906842624 uint32 elements does not fit");
  }
  {
    GgufBuilder b;
    b.kv("t", 13).u32(0);
    expect(b.finish(), "metadata 't': value type 13 is not a GGUF value type");
  }
  {
    GgufBuilder b;
    b.kv("general.alignment", 8).str("32");
    expect(b.finish(), "general.alignment is string, expected uint32");
  }
  {
    GgufBuilder b;
    b.kv("general.alignment", 4).u32(24);
    expect(b.finish(), "general.alignment 24 is not a power of two");
  }
  {
    GgufBuilder b;
    b.kv("k", 4).u32(1).kv("k", 4).u32(2);
    expect(b.finish(), "metadata 'k': the key appears twice");
  }
  {
    GgufBuilder b;
    b.tensor("w", {32}, 99, 0);
    expect(b.finish(std::string(64, '\0')), "tensor 'w': type 99 is no ggml type");
  }
  {
    GgufBuilder b;
    b.tensor("w", {16, 2}, 8, 0);
    expect(b.finish(std::string(64, '\0')), "tensor 'w': row length 16 is not a multiple of q8_0's block of 32");
  }
  {
    GgufBuilder b;
    b.tensor("w", {1, 1, 1, 1, 1}, 0, 0);
    expect(b.finish(std::string(64, '\0')), "tensor 'w' has 5 dimensions");
  }
  {
    GgufBuilder b;
    b.tensor("w", {32, 4}, 0, 0);  // 512 bytes, 64 there
    expect(b.finish(std::string(64, '\0')), "tensor 'w': bytes [0, 512) of the data section lie past its end (64 bytes)");
  }
  {
    GgufBuilder b;
    b.tensor("w", {4}, 0, 8);
    expect(b.finish(std::string(64, '\0')), "tensor 'w': offset 8 is not a multiple of the alignment 32");
  }
  {
    GgufBuilder b;
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
  EXPECT_NE(r.out.find("tokens                                   array[string]   [\"a\", \"bc\"]"), std::string::npos) << r.out;
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
                       "interleaved pairs"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("layers.1.attn.k                blk.1.attn_k.weight"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("-                              rope_freqs.weight"), std::string::npos) << r.out;
}

// Bit for bit what gguf-py (llama.cpp's reference) gives, for every type: random blocks (all quant
// bit patterns) and the first rows of the demo model's q4_k_m, q8_0 and q4_0 files.
TEST(Dequantize, EveryTypeMatchesGgufPyBitForBit) {
  const auto fixture = nlohmann::json::parse(test::read_file(test::fixture("gguf/dequant.json")));
  std::map<std::string, GgmlType> types;
  for (uint32_t id = 0; id < 40; ++id) {
    if (const GgmlTypeInfo* info = ggml_type_info(id); info && info->dequantizable) types[std::string(info->name)] = static_cast<GgmlType>(id);
  }
  std::set<std::string> covered;
  for (const auto& e : fixture["entries"]) {
    const std::string type = e["type"], hex = e["blocks_hex"];
    ASSERT_TRUE(types.count(type)) << type;
    std::vector<uint8_t> blocks(hex.size() / 2);
    for (size_t i = 0; i < blocks.size(); ++i) blocks[i] = static_cast<uint8_t>(std::stoi(hex.substr(2 * i, 2), nullptr, 16));
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
