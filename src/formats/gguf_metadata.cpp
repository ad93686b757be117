#include "formats/gguf_metadata.h"

#include <limits>

#include "util/error.h"

namespace nanoserve {

namespace {
bool is_integer(const GgufValue& v) { return v.kind == GgufValue::Kind::UInt || v.kind == GgufValue::Kind::Int; }
bool is_number(const GgufValue& v) { return is_integer(v) || v.kind == GgufValue::Kind::Float; }
bool is_string(const GgufValue& v) { return v.kind == GgufValue::Kind::String; }

bool fits_int64(const GgufValue& v) {
  return v.kind == GgufValue::Kind::Int || v.uint_value <= static_cast<uint64_t>(std::numeric_limits<int64_t>::max());
}
int64_t as_int64(const GgufValue& v) {
  return v.kind == GgufValue::Kind::Int ? v.int_value : static_cast<int64_t>(v.uint_value);
}
double as_double(const GgufValue& v) {
  if (v.kind == GgufValue::Kind::Float) return v.float_value;
  return static_cast<double>(as_int64(v));
}
}  // namespace

void GgufMetadata::wrong_type(std::string_view key, const GgufValue& value, const char* expected) const {
  fail("{}: metadata {} is {}, expected {}", source_, key, value.type_name(), expected);
}

const GgufValue* GgufMetadata::scalar(std::string_view key, bool (*ok)(const GgufValue&), const char* expected) const {
  const GgufValue* v = contents_.find(key);
  if (!v) return nullptr;
  if (!ok(*v)) wrong_type(key, *v, expected);
  if (!fits_int64(*v)) fail("{}: metadata {} = {} is too large", source_, key, v->uint_value);
  return v;
}

std::optional<int64_t> GgufMetadata::integer(std::string_view key) const {
  if (const GgufValue* v = scalar(key, is_integer, "an integer")) return as_int64(*v);
  return std::nullopt;
}

std::optional<double> GgufMetadata::number(std::string_view key) const {
  if (const GgufValue* v = scalar(key, is_number, "a number")) return as_double(*v);
  return std::nullopt;
}

std::optional<bool> GgufMetadata::boolean(std::string_view key) const {
  if (const GgufValue* v = scalar(
          key, [](const GgufValue& x) { return x.kind == GgufValue::Kind::Bool; }, "a bool")) {
    return v->bool_value;
  }
  return std::nullopt;
}

std::optional<std::string_view> GgufMetadata::string(std::string_view key) const {
  if (const GgufValue* v = scalar(key, is_string, "a string")) return v->string;
  return std::nullopt;
}

int64_t GgufMetadata::required_integer(std::string_view key) const {
  auto v = integer(key);
  if (!v) fail("{}: metadata {} is missing", source_, key);
  return *v;
}

std::string_view GgufMetadata::required_string(std::string_view key) const {
  auto v = string(key);
  if (!v) fail("{}: metadata {} is missing", source_, key);
  return *v;
}

const GgufValue* GgufMetadata::array(std::string_view key, const char* expected,
                                     bool (*element_ok)(const GgufValue&)) const {
  const GgufValue* v = contents_.find(key);
  if (!v) return nullptr;
  if (v->kind != GgufValue::Kind::Array) wrong_type(key, *v, expected);
  for (const auto& e : v->array) {
    if (!element_ok(e)) wrong_type(key, *v, expected);
  }
  return v;
}

std::vector<std::string_view> GgufMetadata::strings(std::string_view key) const {
  std::vector<std::string_view> out;
  if (const GgufValue* v = array(key, "an array of strings", is_string)) {
    for (const auto& e : v->array) out.push_back(e.string);
  }
  return out;
}

std::vector<int64_t> GgufMetadata::integers(std::string_view key) const {
  std::vector<int64_t> out;
  if (const GgufValue* v =
          array(key, "an array of integers", [](const GgufValue& e) { return is_integer(e) && fits_int64(e); })) {
    for (const auto& e : v->array) out.push_back(as_int64(e));
  }
  return out;
}

std::vector<double> GgufMetadata::numbers(std::string_view key) const {
  std::vector<double> out;
  if (const GgufValue* v =
          array(key, "an array of numbers", [](const GgufValue& e) { return is_number(e) && fits_int64(e); })) {
    for (const auto& e : v->array) out.push_back(as_double(e));
  }
  return out;
}

}  // namespace nanoserve
