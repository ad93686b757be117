#include "formats/gguf.h"

#include <fmt/format.h>

#include <cstring>
#include <fstream>
#include <unordered_set>

#include "util/error.h"

namespace nanoserve {

namespace {

constexpr uint32_t kMagic = 0x46554747;  // "GGUF" read as a little-endian uint32
constexpr uint32_t kMaxDims = 4;         // ggml tensors have at most four dimensions
constexpr int kMaxArrayDepth = 8;        // arrays of arrays of ...: real files nest one level
enum ValueType : uint32_t {
  kUInt8,
  kInt8,
  kUInt16,
  kInt16,
  kUInt32,
  kInt32,
  kFloat32,
  kBool,
  kString,
  kArray,
  kUInt64,
  kInt64,
  kFloat64
};
constexpr const char* kTypeNames[] = {"uint8", "int8",   "uint16", "int16",  "uint32", "int32",  "float32",
                                      "bool",  "string", "array",  "uint64", "int64",  "float64"};

// Bytes a value of a fixed-size type takes, 0 for string and array.
uint64_t fixed_size(uint32_t type) {
  switch (type) {
    case kUInt8:
    case kInt8:
    case kBool: return 1;
    case kUInt16:
    case kInt16: return 2;
    case kUInt32:
    case kInt32:
    case kFloat32: return 4;
    case kUInt64:
    case kInt64:
    case kFloat64: return 8;
    default: return 0;
  }
}

// A cursor over the file that refuses to read past its end.
class Reader {
 public:
  Reader(const uint8_t* data, uint64_t size) : data_(data), size_(size) {}
  uint64_t position() const { return pos_; }
  uint64_t remaining() const { return size_ - pos_; }

  template <typename T>
  T read(const char* what) {
    need(sizeof(T), what);
    T v;
    std::memcpy(&v, data_ + pos_, sizeof v);
    pos_ += sizeof v;
    return v;
  }
  std::string_view string(const char* what) {
    const auto length = read<uint64_t>(what);
    need(length, what);
    std::string_view s(reinterpret_cast<const char*>(data_ + pos_), length);
    pos_ += length;
    return s;
  }
  void need(uint64_t bytes, const char* what) const {
    if (bytes > remaining()) fail("truncated at byte {}: {} needs {} bytes, {} remain", pos_, what, bytes, remaining());
  }

 private:
  const uint8_t* data_;
  uint64_t size_, pos_ = 0;
};

GgufValue read_value(Reader& r, uint32_t type, int depth);

GgufValue read_array(Reader& r, int depth) {
  if (depth >= kMaxArrayDepth) fail("arrays nested deeper than {}", kMaxArrayDepth);
  GgufValue v;
  v.kind = GgufValue::Kind::Array;
  v.type = kArray;
  v.element_type = r.read<uint32_t>("array element type");
  if (v.element_type > kFloat64) fail("array element type {} is not a GGUF value type", v.element_type);
  const auto count = r.read<uint64_t>("array length");
  // Every element takes at least one byte (strings and arrays eight): a count the rest of the
  // file cannot hold is refused before anything is allocated for it.
  const uint64_t min_bytes = fixed_size(v.element_type) ? fixed_size(v.element_type) : 8;
  if (count > r.remaining() / min_bytes)
    fail("array of {} {} elements does not fit in the {} bytes left", count, kTypeNames[v.element_type], r.remaining());
  v.array.reserve(count);
  for (uint64_t i = 0; i < count; ++i) v.array.push_back(read_value(r, v.element_type, depth + 1));
  return v;
}

GgufValue read_value(Reader& r, uint32_t type, int depth) {
  GgufValue v;
  v.type = type;
  switch (type) {
    case kUInt8:
      v.kind = GgufValue::Kind::UInt;
      v.uint_value = r.read<uint8_t>("uint8");
      break;
    case kUInt16:
      v.kind = GgufValue::Kind::UInt;
      v.uint_value = r.read<uint16_t>("uint16");
      break;
    case kUInt32:
      v.kind = GgufValue::Kind::UInt;
      v.uint_value = r.read<uint32_t>("uint32");
      break;
    case kUInt64:
      v.kind = GgufValue::Kind::UInt;
      v.uint_value = r.read<uint64_t>("uint64");
      break;
    case kInt8:
      v.kind = GgufValue::Kind::Int;
      v.int_value = r.read<int8_t>("int8");
      break;
    case kInt16:
      v.kind = GgufValue::Kind::Int;
      v.int_value = r.read<int16_t>("int16");
      break;
    case kInt32:
      v.kind = GgufValue::Kind::Int;
      v.int_value = r.read<int32_t>("int32");
      break;
    case kInt64:
      v.kind = GgufValue::Kind::Int;
      v.int_value = r.read<int64_t>("int64");
      break;
    case kFloat32:
      v.kind = GgufValue::Kind::Float;
      v.float_value = r.read<float>("float32");
      break;
    case kFloat64:
      v.kind = GgufValue::Kind::Float;
      v.float_value = r.read<double>("float64");
      break;
    case kBool: {
      const auto b = r.read<uint8_t>("bool");
      if (b > 1) fail("bool value {} is neither 0 nor 1", b);
      v.kind = GgufValue::Kind::Bool;
      v.bool_value = b == 1;
      break;
    }
    case kString:
      v.kind = GgufValue::Kind::String;
      v.string = r.string("string value");
      break;
    case kArray: return read_array(r, depth);
    default: fail("value type {} is not a GGUF value type", type);
  }
  return v;
}

void read_tensor_info(Reader& r, GgufTensor& t) {
  t.name = std::string(r.string("tensor name"));
  const auto n_dims = r.read<uint32_t>("tensor dimension count");
  if (n_dims == 0 || n_dims > kMaxDims)
    fail("tensor '{}' has {} dimensions (1 to {} allowed)", t.name, n_dims, kMaxDims);
  for (uint32_t i = 0; i < n_dims; ++i) {
    const auto d = r.read<uint64_t>("tensor dimension");
    if (d == 0 || d > (uint64_t{1} << 40)) fail("tensor '{}': dimension {} is {}", t.name, i, d);
    t.dims.push_back(d);
  }
  const auto type = r.read<uint32_t>("tensor type");
  const GgmlTypeInfo* info = ggml_type_info(type);
  if (!info) fail("tensor '{}': type {} is no ggml type", t.name, type);
  t.type = static_cast<GgmlType>(type);
  t.offset = r.read<uint64_t>("tensor offset");
  if (t.dims[0] % info->block_elems != 0) {
    fail("tensor '{}': row length {} is not a multiple of {}'s block of {}", t.name, t.dims[0], info->name,
         info->block_elems);
  }
  uint64_t elements = 1;
  for (uint64_t d : t.dims) elements = checked_mul(elements, d, "tensor element count");
  t.bytes = checked_mul(elements / info->block_elems, info->block_bytes, "tensor size");
}

}  // namespace

uint64_t GgufTensor::elements() const {
  uint64_t n = 1;
  for (uint64_t d : dims) n *= d;
  return n;
}

std::string GgufValue::type_name() const {
  if (kind == Kind::Array) return fmt::format("array[{}]", kTypeNames[element_type]);
  return kTypeNames[type];
}

std::string GgufValue::to_string(size_t max_elements) const {
  switch (kind) {
    case Kind::UInt: return std::to_string(uint_value);
    case Kind::Int: return std::to_string(int_value);
    case Kind::Float: return fmt::format("{}", float_value);
    case Kind::Bool: return bool_value ? "true" : "false";
    case Kind::String: {
      std::string s(string.substr(0, 200));
      for (auto& c : s) {
        if (c == '\n') c = ' ';
      }
      return "\"" + s + (string.size() > 200 ? "...\"" : "\"");
    }
    case Kind::Array: {
      std::string out = "[";
      for (size_t i = 0; i < array.size() && i < max_elements; ++i)
        out += (i ? ", " : "") + array[i].to_string(max_elements);
      if (array.size() > max_elements) out += fmt::format(", ... ({} in all)", array.size());
      return out + "]";
    }
  }
  return "";
}

const GgufValue* GgufContents::find(std::string_view key) const {
  for (const auto& [k, v] : metadata) {
    if (k == key) return &v;
  }
  return nullptr;
}

const GgufTensor* GgufContents::tensor(std::string_view name) const {
  for (const auto& t : tensors) {
    if (t.name == name) return &t;
  }
  return nullptr;
}

GgufContents parse_gguf(const uint8_t* data, uint64_t size) {
  Reader r(data, size);
  GgufContents c;
  const auto magic = r.read<uint32_t>("magic");
  if (magic != kMagic) fail("not a GGUF file (the first 4 bytes are not \"GGUF\")");
  c.version = r.read<uint32_t>("version");
  if (c.version == 1) fail("GGUF version 1 is not supported (32-bit counts; convert the file again)");
  if (c.version != 2 && c.version != 3) {
    const bool swapped = c.version == 0x02000000 || c.version == 0x03000000;
    fail("GGUF version {} is not supported (2 and 3 are){}", c.version, swapped ? ": the file is big-endian" : "");
  }
  const auto tensor_count = r.read<uint64_t>("tensor count");
  const auto kv_count = r.read<uint64_t>("metadata count");
  // A key/value takes at least 12 bytes, a tensor description at least 24: counts that the file
  // cannot hold are refused before anything is allocated for them.
  if (kv_count > r.remaining() / 12) fail("metadata count {} does not fit in a file of {} bytes", kv_count, size);
  if (tensor_count > r.remaining() / 24) fail("tensor count {} does not fit in a file of {} bytes", tensor_count, size);
  std::unordered_set<std::string_view> keys;
  for (uint64_t i = 0; i < kv_count; ++i) {
    const std::string_view key = r.string("metadata key");
    with_context(fmt::format("metadata '{}'", key), [&] {
      if (!keys.insert(key).second) fail("the key appears twice");
      const auto type = r.read<uint32_t>("value type");
      c.metadata.emplace_back(std::string(key), read_value(r, type, 0));
    });
  }
  if (const GgufValue* a = c.find("general.alignment")) {
    if (a->kind != GgufValue::Kind::UInt || a->type != kUInt32)
      fail("general.alignment is {}, expected uint32", a->type_name());
    if (a->uint_value == 0 || (a->uint_value & (a->uint_value - 1)) != 0 || a->uint_value > 65536) {
      fail("general.alignment {} is not a power of two up to 65536", a->uint_value);
    }
    c.alignment = a->uint_value;
  }
  c.tensors.resize(tensor_count);
  std::unordered_set<std::string> names;
  for (auto& t : c.tensors) {
    read_tensor_info(r, t);
    if (!names.insert(t.name).second) fail("tensor '{}' appears twice", t.name);
  }
  c.data_offset = (r.position() + c.alignment - 1) / c.alignment * c.alignment;
  if (c.data_offset > size && !c.tensors.empty())
    fail("the data section starts at byte {}, past the end of the file ({} bytes)", c.data_offset, size);
  const uint64_t data_size = size > c.data_offset ? size - c.data_offset : 0;
  for (auto& t : c.tensors) {
    if (t.offset % c.alignment != 0)
      fail("tensor '{}': offset {} is not a multiple of the alignment {}", t.name, t.offset, c.alignment);
    if (t.offset > data_size || t.bytes > data_size - t.offset) {
      fail("tensor '{}': bytes [{}, {}) of the data section lie past its end ({} bytes)", t.name, t.offset,
           checked_add(t.offset, t.bytes, "tensor end"), data_size);
    }
    t.data = data + c.data_offset + t.offset;
  }
  return c;
}

GgufFile::GgufFile(const std::string& path) : file_(std::make_unique<MappedFile>(path)) {
  contents_ = with_context(path, [&] { return parse_gguf(file_->data(), file_->size()); });
}

bool is_gguf_path(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  char magic[4] = {};
  return in.read(magic, 4) && std::memcmp(magic, "GGUF", 4) == 0;
}

}  // namespace nanoserve
