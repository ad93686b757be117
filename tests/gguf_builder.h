// GGUF images built byte by byte, so that each test can break exactly one thing.
#pragma once

#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

namespace nanoserve::test {

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
  GgufBuilder& strings(const std::string& key, const std::vector<std::string>& values) {
    kv(key, 9).u32(8).u64(values.size());
    for (const auto& v : values) str(v);
    return *this;
  }
  GgufBuilder& floats(const std::string& key, const std::vector<float>& values) {
    kv(key, 9).u32(6).u64(values.size());
    for (float v : values) f32(v);
    return *this;
  }
  GgufBuilder& int32s(const std::string& key, const std::vector<int32_t>& values) {
    kv(key, 9).u32(5).u64(values.size());
    for (int32_t v : values) raw(&v, 4);
    return *this;
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

}  // namespace nanoserve::test
