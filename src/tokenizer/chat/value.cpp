#include "tokenizer/chat/value.h"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <fmt/format.h>

#include "util/error.h"

namespace nanoserve::jinja {

using json = nlohmann::ordered_json;  // dicts keep insertion order, as in Python

namespace {
thread_local size_t render_bytes = 0;                // string bytes made by the render under way on this thread
thread_local uint64_t render_work = 0;               // units of work done by the render under way on this thread
thread_local uint64_t render_max_work = UINT64_MAX;  // set by start_render

void check_depth(int depth) {
  if (depth > Value::kMaxNesting)
    fail("chat template: a value nested deeper than {} levels (a list that contains itself?)", Value::kMaxNesting);
}
}  // namespace

void Value::start_render(uint64_t max_work) {
  render_bytes = 0;
  render_work = 0;
  render_max_work = max_work;
}

void Value::charge(uint64_t units) {
  render_work += units;
  if (render_work > render_max_work) {
    fail("chat template: the render did over {} units of work (a loop or recursion without end?)", render_max_work);
  }
}

void Value::check_string_size(size_t bytes) {
  if (bytes > kMaxStringBytes)
    fail("chat template: a string of {} bytes is over the limit of {}", bytes, kMaxStringBytes);
}

void Value::check_string(size_t bytes) {
  check_string_size(bytes);
  render_bytes += bytes;
  if (render_bytes > kMaxRenderBytes) fail("chat template: the render made over {} bytes of strings", kMaxRenderBytes);
}

void Value::check_items(size_t items) {
  if (items > kMaxItems) fail("chat template: a list of {} items is over the limit of {}", items, kMaxItems);
}

Value Value::from_json(const json& j, int depth) {
  check_depth(depth);
  switch (j.type()) {
    case json::value_t::null: return none();
    case json::value_t::boolean: return from(j.get<bool>());
    case json::value_t::number_integer:
    case json::value_t::number_unsigned: return from(j.get<int64_t>());
    case json::value_t::number_float: return from(j.get<double>());
    case json::value_t::string: return from(j.get<std::string>());
    case json::value_t::array: {
      jinja::Array a;
      for (const auto& x : j) a.push_back(from_json(x, depth + 1));
      return from(std::move(a));
    }
    case json::value_t::object: {
      jinja::Object o;
      for (const auto& [k, x] : j.items()) o.emplace_back(k, from_json(x, depth + 1));
      return from(std::move(o));
    }
    default: return {};
  }
}

bool Value::truthy() const {
  switch (kind) {
    case Kind::Undefined:
    case Kind::None: return false;
    case Kind::Bool: return boolean;
    case Kind::Int: return integer != 0;
    case Kind::Float: return number != 0;
    case Kind::String: return !string.empty();
    case Kind::Array: return !array->empty();
    case Kind::Object: return !object->empty();
    case Kind::Function: return true;
  }
  return false;
}

namespace {
std::string float_str(double d) {
  if (std::isinf(d)) return d > 0 ? "inf" : "-inf";
  if (std::isnan(d)) return "nan";
  std::string s = fmt::format("{}", d);  // shortest round-trip, like Python's repr
  if (s.find_first_of(".en") == std::string::npos) s += ".0";
  return s;
}

std::string quote(const std::string& s) {
  const char q = s.find('\'') != std::string::npos && s.find('"') == std::string::npos ? '"' : '\'';
  std::string out(1, q);
  for (char c : s) {
    if (c == q || c == '\\') out += '\\';
    if (c == '\n') {
      out += "\\n";
      continue;
    }
    out += c;
  }
  return out + q;
}
}  // namespace

std::string Value::str() const {
  switch (kind) {
    case Kind::Undefined: return "";
    case Kind::String: return string;
    default: return repr();
  }
}

std::string Value::repr(int depth) const {
  check_depth(depth);
  charge(1);
  switch (kind) {
    case Kind::Undefined: return "";
    case Kind::None: return "None";
    case Kind::Bool: return boolean ? "True" : "False";
    case Kind::Int: return std::to_string(integer);
    case Kind::Float: return float_str(number);
    case Kind::String: return quote(string);
    case Kind::Array: {
      std::string out = "[";
      for (size_t i = 0; i < array->size(); ++i) out += (i ? ", " : "") + (*array)[i].repr(depth + 1);
      return out + "]";
    }
    case Kind::Object: {
      std::string out = "{";
      for (size_t i = 0; i < object->size(); ++i)
        out += (i ? ", " : "") + quote((*object)[i].first) + ": " + (*object)[i].second.repr(depth + 1);
      return out + "}";
    }
    case Kind::Function: return "<function>";
  }
  return "";
}

std::string Value::type_name() const {
  static const char* names[] = {"undefined", "none", "bool", "int", "float", "string", "list", "dict", "function"};
  return names[static_cast<int>(kind)];
}

json Value::to_json(int depth) const {
  check_depth(depth);
  charge(1);
  switch (kind) {
    case Kind::Undefined:
    case Kind::None:
    case Kind::Function: return nullptr;
    case Kind::Bool: return boolean;
    case Kind::Int: return integer;
    case Kind::Float: return number;
    case Kind::String: return string;
    case Kind::Array: {
      json a = json::array();
      for (const auto& x : *array) a.push_back(x.to_json(depth + 1));
      return a;
    }
    case Kind::Object: {
      json o = json::object();
      for (const auto& [k, x] : *object) o[k] = x.to_json(depth + 1);
      return o;
    }
  }
  return nullptr;
}

const Value* Value::get(const std::string& key) const {
  if (kind != Kind::Object) return nullptr;
  for (const auto& [k, v] : *object) {
    if (k == key) return &v;
  }
  return nullptr;
}

void Value::set(const std::string& key, Value v) {
  for (auto& [k, x] : *object) {
    if (k == key) {
      x = std::move(v);
      return;
    }
  }
  object->emplace_back(key, std::move(v));
}

bool Value::reaches(const Value& container, int depth) const {
  check_depth(depth);
  charge(1);
  if (kind == Kind::Array) {
    if (array == container.array) return true;
    return std::any_of(array->begin(), array->end(), [&](const Value& x) { return x.reaches(container, depth + 1); });
  }
  if (kind == Kind::Object) {
    if (object == container.object) return true;
    return std::any_of(object->begin(), object->end(),
                       [&](const auto& kv) { return kv.second.reaches(container, depth + 1); });
  }
  return false;
}

bool operator==(const Value& a, const Value& b) { return equal(a, b, 0); }

bool equal(const Value& a, const Value& b, int depth) {
  using K = Value::Kind;
  check_depth(depth);
  Value::charge(1);
  if (a.is_number() && b.is_number()) return a.as_double() == b.as_double();
  if ((a.kind == K::Bool && b.is_number()) || (a.is_number() && b.kind == K::Bool)) {  // True == 1, as in Python
    auto number = [](const Value& v) { return v.kind == K::Bool ? (v.boolean ? 1.0 : 0.0) : v.as_double(); };
    return number(a) == number(b);
  }
  if (a.kind != b.kind) return false;
  switch (a.kind) {
    case K::Undefined:
    case K::None: return true;
    case K::Bool: return a.boolean == b.boolean;
    case K::String: Value::charge_scan(a.string.size()); return a.string == b.string;
    case K::Array:
      return a.array->size() == b.array->size() &&
             std::equal(a.array->begin(), a.array->end(), b.array->begin(),
                        [&](const Value& x, const Value& y) { return equal(x, y, depth + 1); });
    case K::Object:
      return a.object->size() == b.object->size() &&
             std::equal(a.object->begin(), a.object->end(), b.object->begin(), [&](const auto& x, const auto& y) {
               return x.first == y.first && equal(x.second, y.second, depth + 1);
             });
    case K::Function: return a.function == b.function;
    default: return false;
  }
}

namespace {
void dump(const json& j, int indent, int depth, std::string& out) {
  check_depth(depth);
  const std::string pad = indent > 0 ? "\n" + std::string(static_cast<size_t>(indent * (depth + 1)), ' ') : "";
  const std::string close = indent > 0 ? "\n" + std::string(static_cast<size_t>(indent * depth), ' ') : "";
  const char* comma = indent > 0 ? "," : ", ";
  if (j.is_object()) {
    if (j.empty()) {
      out += "{}";
      return;
    }
    out += "{";
    bool first = true;
    for (const auto& [k, v] : j.items()) {
      out += (first ? "" : comma) + pad + json(k).dump(-1, ' ', false, json::error_handler_t::replace) + ": ";
      dump(v, indent, depth + 1, out);
      first = false;
    }
    out += close + "}";
  } else if (j.is_array()) {
    if (j.empty()) {
      out += "[]";
      return;
    }
    out += "[";
    for (size_t i = 0; i < j.size(); ++i) {
      out += (i ? comma : "") + pad;
      dump(j[i], indent, depth + 1, out);
    }
    out += close + "]";
  } else if (j.is_number_float()) {
    out += float_str(j.get<double>());
  } else {
    out += j.dump(-1, ' ', false, json::error_handler_t::replace);  // invalid UTF-8 in a template string: U+FFFD
  }
}
}  // namespace

std::string dump_json(const json& j, int indent) {
  std::string out;
  dump(j, indent, 0, out);
  return out;
}

const Value* Arguments::find(size_t position, const std::string& keyword) const {
  for (const auto& [k, v] : keywords) {
    if (k == keyword) return &v;
  }
  return position < positional.size() ? &positional[position] : nullptr;
}

Value Arguments::get(size_t position, const std::string& keyword, Value fallback) const {
  const Value* v = find(position, keyword);
  return v ? *v : fallback;
}

}  // namespace nanoserve::jinja
