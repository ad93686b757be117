#include "formats/gguf_writer.h"

#include <cstring>
#include <fstream>

#include "util/error.h"

namespace nanoserve {

namespace {
constexpr uint32_t kMagic = 0x46554747;  // "GGUF", little-endian
constexpr uint64_t kAlignment = 32;
enum ValueType : uint32_t { kU32 = 4, kI32 = 5, kF32 = 6, kBool = 7, kString = 8, kArray = 9 };

uint64_t aligned(uint64_t n) { return (n + kAlignment - 1) / kAlignment * kAlignment; }
}  // namespace

template <typename T>
void GgufWriter::raw(const T& value) {
  metadata_.append(reinterpret_cast<const char*>(&value), sizeof value);
}

void GgufWriter::raw_string(const std::string& s) {
  raw(static_cast<uint64_t>(s.size()));
  metadata_ += s;
}

void GgufWriter::key(const std::string& name, uint32_t type) {
  ++metadata_count_;
  raw_string(name);
  raw(type);
}

void GgufWriter::add_string(const std::string& k, const std::string& value) {
  key(k, kString);
  raw_string(value);
}

void GgufWriter::add_u32(const std::string& k, uint32_t value) {
  key(k, kU32);
  raw(value);
}

void GgufWriter::add_f32(const std::string& k, float value) {
  key(k, kF32);
  raw(value);
}

void GgufWriter::add_bool(const std::string& k, bool value) {
  key(k, kBool);
  raw(static_cast<uint8_t>(value));
}

void GgufWriter::add_strings(const std::string& k, const std::vector<std::string>& values) {
  key(k, kArray);
  raw(static_cast<uint32_t>(kString));
  raw(static_cast<uint64_t>(values.size()));
  for (const auto& v : values) raw_string(v);
}

void GgufWriter::add_i32s(const std::string& k, const std::vector<int32_t>& values) {
  key(k, kArray);
  raw(static_cast<uint32_t>(kI32));
  raw(static_cast<uint64_t>(values.size()));
  for (int32_t v : values) raw(v);
}

void GgufWriter::add_f32s(const std::string& k, const std::vector<float>& values) {
  key(k, kArray);
  raw(static_cast<uint32_t>(kF32));
  raw(static_cast<uint64_t>(values.size()));
  for (float v : values) raw(v);
}

void GgufWriter::add_tensor(const std::string& name, GgmlType type, const std::vector<int64_t>& shape, const void* data,
                            size_t bytes) {
  tensors_.push_back({name, type, shape, data, bytes});
}

void GgufWriter::write(const std::string& path) const {
  std::string header;
  auto put = [&header](const auto& v) { header.append(reinterpret_cast<const char*>(&v), sizeof v); };
  put(kMagic);
  put(uint32_t{3});
  put(static_cast<uint64_t>(tensors_.size()));
  put(metadata_count_);
  header += metadata_;
  uint64_t offset = 0;
  for (const auto& t : tensors_) {
    put(static_cast<uint64_t>(t.name.size()));
    header += t.name;
    put(static_cast<uint32_t>(t.shape.size()));
    for (auto d = t.shape.rbegin(); d != t.shape.rend(); ++d) put(static_cast<uint64_t>(*d));
    put(static_cast<uint32_t>(t.type));
    put(offset);
    offset = aligned(offset + t.bytes);
  }
  header.resize(aligned(header.size()), '\0');
  std::ofstream out(path, std::ios::binary);
  if (!out) fail("{}: cannot open for writing", path);
  out.write(header.data(), static_cast<std::streamsize>(header.size()));
  const std::string padding(kAlignment, '\0');
  for (const auto& t : tensors_) {
    out.write(static_cast<const char*>(t.data), static_cast<std::streamsize>(t.bytes));
    out.write(padding.data(), static_cast<std::streamsize>(aligned(t.bytes) - t.bytes));
  }
  if (!out) fail("{}: write failed (disk full?)", path);
}

}  // namespace nanoserve
