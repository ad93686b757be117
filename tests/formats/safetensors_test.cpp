#include "formats/safetensors.h"

#include <gtest/gtest.h>

#include <cstring>
#include <fstream>
#include <nlohmann/json.hpp>

#include "test_support.h"
#include "util/error.h"

namespace nanoserve {
namespace {

using test::ScratchDir;

// A safetensors file from a raw header text and data section.
std::string make_file(const std::string& header, const std::string& data) {
  uint64_t len = header.size();
  std::string bytes(reinterpret_cast<const char*>(&len), 8);
  return bytes + header + data;
}

// Expects SafetensorsFile(bytes) to fail with a message containing `needle`.
void expect_error(const std::string& bytes, const std::string& needle) {
  ScratchDir dir;
  const std::string path = dir.file("bad.safetensors");
  test::write_file(path, bytes);
  try {
    SafetensorsFile file(path);
    FAIL() << "no error; wanted one containing: " << needle;
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find(path), std::string::npos) << "error should name the file: " << e.what();
  }
}

TEST(Safetensors, ReadsTensorsAndMetadata) {
  float values[6] = {1, 2, 3, 4, 5, 6};
  int64_t ids[2] = {7, -8};
  ScratchDir dir;
  const std::string path = dir.file("ok.safetensors");
  write_safetensors(path, {{"a", DType::F32, {2, 3}, values}, {"ids", DType::I64, {2}, ids}});
  SafetensorsFile file(path);
  ASSERT_EQ(file.tensors().size(), 2u);
  const TensorView& a = file.tensors().at("a");
  EXPECT_EQ(a.dtype, DType::F32);
  EXPECT_EQ(a.shape, (Shape{2, 3}));
  EXPECT_EQ(std::memcmp(a.data, values, sizeof values), 0);
  const TensorView& i = file.tensors().at("ids");
  EXPECT_EQ(i.dtype, DType::I64);
  EXPECT_EQ(std::memcmp(i.data, ids, sizeof ids), 0);
  EXPECT_EQ(reinterpret_cast<uintptr_t>(a.data) % 8, 0u) << "data section should be 8-byte aligned";
}

TEST(Safetensors, AcceptsMetadataAndEmptyTensors) {
  auto bytes =
      make_file(R"({"__metadata__":{"format":"pt"},"e":{"dtype":"F16","shape":[0,4],"data_offsets":[0,0]}})", "");
  ScratchDir dir;
  test::write_file(dir.file("m.safetensors"), bytes);
  SafetensorsFile file(dir.file("m.safetensors"));
  EXPECT_EQ(file.metadata().at("format"), "pt");
  EXPECT_EQ(file.tensors().at("e").nbytes, 0u);
}

// Issue 26: an empty tensor pointing into another's bytes was reported as overlapping it.
TEST(Safetensors, EmptyTensorsOverlapNothing) {
  auto bytes = make_file(
      R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},)"
      R"("e":{"dtype":"F32","shape":[0],"data_offsets":[4,4]},"z":{"dtype":"F32","shape":[0],"data_offsets":[0,0]}})",
      std::string(8, 'x'));
  ScratchDir dir;
  test::write_file(dir.file("m.safetensors"), bytes);
  SafetensorsFile file(dir.file("m.safetensors"));
  EXPECT_EQ(file.tensors().size(), 3u);
}

// Issue 26: a shape nested 300k levels deep overflowed the stack while the error message printed
// it. The header's nesting is bounded while it is parsed; a bad shape prints a short excerpt.
TEST(SafetensorsErrors, DeepOrLongShapesAreShortErrors) {
  const std::string deep = std::string(300000, '[') + std::string(300000, ']');
  expect_error(make_file(R"({"a":{"dtype":"F32","shape":)" + deep + R"(,"data_offsets":[0,4]}})", "abcd"),
               "header: nested deeper than 128 levels");
  std::string long_shape = "[1";
  for (int i = 0; i < 10000; ++i) long_shape += ",-1";
  expect_error(make_file(R"({"a":{"dtype":"F32","shape":)" + long_shape + R"(],"data_offsets":[0,4]}})", "abcd"),
               "'shape' must be an array of non-negative integers, got [1,-1,-1");
  expect_error(make_file(R"({"a":{"dtype":"F32","shape":)" + long_shape + R"(],"data_offsets":[0,4]}})", "abcd"),
               "-1,... (30003 bytes)");
}

// The loader hands out exactly the bytes the header points at, for every tensor of the demo model:
// checked against an independent reading of the file with plain stream I/O.
TEST(Safetensors, DemoModelBytesMatchIndependentRead) {
  const std::string path = test::demo_model_dir() + "/model.safetensors";
  std::ifstream in(path, std::ios::binary);
  uint64_t header_len = 0;
  in.read(reinterpret_cast<char*>(&header_len), 8);
  std::string header(header_len, '\0');
  in.read(header.data(), static_cast<std::streamsize>(header_len));
  auto j = nlohmann::json::parse(header);
  SafetensorsFile file(path);
  size_t checked = 0;
  for (const auto& [name, entry] : j.items()) {
    if (name == "__metadata__") continue;
    const uint64_t begin = entry["data_offsets"][0], end = entry["data_offsets"][1];
    std::string expected(end - begin, '\0');
    in.seekg(static_cast<std::streamoff>(8 + header_len + begin));
    in.read(expected.data(), static_cast<std::streamsize>(expected.size()));
    const TensorView& t = file.tensors().at(name);
    ASSERT_EQ(t.nbytes, expected.size()) << name;
    EXPECT_EQ(std::memcmp(t.data, expected.data(), expected.size()), 0) << name;
    EXPECT_EQ(std::string(dtype_name(t.dtype)), entry["dtype"].get<std::string>()) << name;
    ++checked;
  }
  EXPECT_EQ(checked, 74u);  // 8 layers x 9 tensors + embedding + final norm
}

TEST(SafetensorsErrors, TruncatedFile) { expect_error("abc", "too short"); }

TEST(SafetensorsErrors, HeaderLengthPastEnd) {
  std::string bytes = make_file(R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}})", "abcd");
  bytes[0] = static_cast<char>(0xff);  // header length now runs far past the file
  expect_error(bytes, "runs past the end");
}

TEST(SafetensorsErrors, HugeHeaderLength) {
  std::string bytes(16, '\0');
  uint64_t huge = ~0ull;
  std::memcpy(bytes.data(), &huge, 8);
  expect_error(bytes, "exceeds");
}

TEST(SafetensorsErrors, HeaderNotJson) { expect_error(make_file("{not json", ""), "not valid JSON"); }

TEST(SafetensorsErrors, OffsetsOutOfRange) {
  expect_error(make_file(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}})", "abcd"),
               "outside the data section");
}

TEST(SafetensorsErrors, OffsetsReversed) {
  expect_error(make_file(R"({"a":{"dtype":"F32","shape":[0],"data_offsets":[4,0]}})", "abcd"),
               "outside the data section");
}

TEST(SafetensorsErrors, OverlappingTensors) {
  expect_error(make_file(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},)"
                         R"("b":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}})",
                         std::string(12, 'x')),
               "overlap");
}

TEST(SafetensorsErrors, UnknownDtype) {
  expect_error(make_file(R"({"a":{"dtype":"Q9","shape":[1],"data_offsets":[0,4]}})", "abcd"), "unsupported dtype 'Q9'");
}

TEST(SafetensorsErrors, ByteLengthDisagreesWithShape) {
  expect_error(make_file(R"({"a":{"dtype":"BF16","shape":[3],"data_offsets":[0,4]}})", "abcd"), "expected 6");
}

TEST(SafetensorsErrors, ShapeProductOverflows) {
  expect_error(make_file(R"({"a":{"dtype":"F32","shape":[4294967296,4294967296],"data_offsets":[0,4]}})", "abcd"),
               "overflows");
}

TEST(SafetensorsErrors, NegativeDimension) {
  expect_error(make_file(R"({"a":{"dtype":"F32","shape":[-1],"data_offsets":[0,4]}})", "abcd"), "non-negative");
}

TEST(SafetensorsErrors, MissingField) {
  expect_error(make_file(R"({"a":{"dtype":"F32","shape":[1]}})", "abcd"), "missing 'data_offsets'");
}

TEST(SafetensorsErrors, MissingFile) { EXPECT_THROW(SafetensorsFile("/nonexistent/model.safetensors"), Error); }

}  // namespace
}  // namespace nanoserve
