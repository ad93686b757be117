#include "formats/safetensors.h"

#include <algorithm>
#include <fstream>
#include <cstring>
#include <nlohmann/json.hpp>

#include "util/error.h"
#include "util/json_parse.h"

namespace nanoserve {

namespace {

using json = nlohmann::json;

// A header larger than this is not a real checkpoint (the largest real ones are a few MB).
constexpr uint64_t kMaxHeaderBytes = 100ull << 20;

Shape parse_shape(const json& j) {
  if (!j.is_array()) fail("'shape' must be an array of non-negative integers");
  Shape shape;
  for (const auto& d : j) {
    if (!d.is_number_unsigned()) fail("'shape' must be an array of non-negative integers, got {}", json_excerpt(j));
    shape.push_back(d.get<int64_t>());
  }
  return shape;
}

uint64_t expected_bytes(DType dtype, const Shape& shape) {
  uint64_t n = dtype_size(dtype);
  for (int64_t d : shape) n = checked_mul(n, static_cast<uint64_t>(d), "tensor byte length");
  return n;
}

TensorView parse_tensor(const std::string& name, const json& entry, const uint8_t* data, uint64_t data_size) {
  if (!entry.is_object()) fail("entry must be an object");
  for (const char* key : {"dtype", "shape", "data_offsets"}) {
    if (!entry.contains(key)) fail("missing '{}'", key);
  }
  TensorView view;
  view.name = name;
  if (!entry["dtype"].is_string()) fail("'dtype' must be a string");
  auto dtype_text = entry["dtype"].get<std::string>();
  if (!parse_dtype(dtype_text, &view.dtype))
    fail("unsupported dtype '{}' (supported: F32, F16, BF16, I64)", dtype_text);
  view.shape = parse_shape(entry["shape"]);
  const json& offsets = entry["data_offsets"];
  if (!offsets.is_array() || offsets.size() != 2 || !offsets[0].is_number_unsigned() ||
      !offsets[1].is_number_unsigned()) {
    fail("'data_offsets' must be two non-negative integers [begin, end]");
  }
  auto begin = offsets[0].get<uint64_t>(), end = offsets[1].get<uint64_t>();
  if (begin > end || end > data_size) {
    fail("data_offsets [{}, {}] outside the data section of {} bytes", begin, end, data_size);
  }
  uint64_t want = expected_bytes(view.dtype, view.shape);
  if (end - begin != want) {
    fail("{} bytes for dtype {} and shape {}, expected {}", end - begin, dtype_text, shape_str(view.shape), want);
  }
  view.data = data + begin;
  view.nbytes = end - begin;
  return view;
}

void check_no_overlap(const std::map<std::string, TensorView>& tensors) {
  std::vector<const TensorView*> sorted;
  for (const auto& [_, t] : tensors) {
    if (t.nbytes > 0) sorted.push_back(&t);  // an empty tensor holds no bytes, wherever it points
  }
  std::sort(sorted.begin(), sorted.end(), [](auto* a, auto* b) { return a->data < b->data; });
  for (size_t i = 1; i < sorted.size(); ++i) {
    if (sorted[i - 1]->data + sorted[i - 1]->nbytes > sorted[i]->data) {
      fail("tensors '{}' and '{}' overlap in the data section", sorted[i - 1]->name, sorted[i]->name);
    }
  }
}

}  // namespace

SafetensorsContents parse_safetensors(const uint8_t* bytes, uint64_t size) {
  SafetensorsContents out;
  if (size < 8) fail("file is {} bytes, too short for a safetensors header", size);
  uint64_t header_len = 0;
  std::memcpy(&header_len, bytes, 8);  // little-endian on every platform nanoserve runs on
  if (header_len > kMaxHeaderBytes) fail("header length {} exceeds the {} byte limit", header_len, kMaxHeaderBytes);
  if (header_len > size - 8) fail("header length {} runs past the end of the {} byte file", header_len, size);
  const char* header = reinterpret_cast<const char*>(bytes + 8);
  json j = parse_json(std::string_view(header, header_len), "header");
  if (!j.is_object()) fail("header must be a JSON object");
  const uint8_t* data = bytes + 8 + header_len;
  const uint64_t data_size = size - 8 - header_len;
  for (const auto& [name, entry] : j.items()) {
    if (name == "__metadata__") {
      if (!entry.is_object()) fail("__metadata__ must be an object of strings");
      for (const auto& [k, v] : entry.items()) {
        if (!v.is_string()) fail("__metadata__.{} must be a string", k);
        out.metadata[k] = v.get<std::string>();
      }
      continue;
    }
    const std::string& tensor_name = name;  // structured bindings cannot be captured before C++20 in clang 14
    const json& tensor_entry = entry;
    out.tensors[name] =
        with_context("tensor '" + name + "'", [&] { return parse_tensor(tensor_name, tensor_entry, data, data_size); });
  }
  check_no_overlap(out.tensors);
  return out;
}

SafetensorsFile::SafetensorsFile(const std::string& path) {
  with_context(path, [&] {
    file_ = std::make_unique<MappedFile>(path);
    auto contents = parse_safetensors(file_->data(), file_->size());
    tensors_ = std::move(contents.tensors);
    metadata_ = std::move(contents.metadata);
  });
}

void write_safetensors(const std::string& path, const std::vector<TensorToWrite>& tensors) {
  json header = json::object();
  uint64_t offset = 0;
  std::vector<uint64_t> sizes;
  for (const auto& t : tensors) {
    uint64_t n = expected_bytes(t.dtype, t.shape);
    header[t.name] = {{"dtype", dtype_name(t.dtype)}, {"shape", t.shape}, {"data_offsets", {offset, offset + n}}};
    sizes.push_back(n);
    offset += n;
  }
  std::string text = header.dump();
  text.append((8 - text.size() % 8) % 8, ' ');  // keeps the data section 8-byte aligned
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  if (!out) fail("{}: cannot open for writing", path);
  uint64_t len = text.size();
  out.write(reinterpret_cast<const char*>(&len), 8);
  out.write(text.data(), static_cast<std::streamsize>(text.size()));
  for (size_t i = 0; i < tensors.size(); ++i) {
    out.write(static_cast<const char*>(tensors[i].data), static_cast<std::streamsize>(sizes[i]));
  }
  if (!out.flush()) fail("{}: write failed", path);
}

}  // namespace nanoserve
