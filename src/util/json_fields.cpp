#include "util/json_fields.h"

#include "util/error.h"

namespace nanoserve {

using json = nlohmann::json;

JsonFields::JsonFields(const json& object, std::string source) : object_(object), source_(std::move(source)) {
  if (!object_.is_object()) fail("{}: expected a JSON object", source_);
}

bool JsonFields::has(const std::string& key) const { return object_.contains(key) && !object_[key].is_null(); }

const json& JsonFields::value(const std::string& key) const {
  if (!has(key)) fail("{}: missing field '{}'", source_, key);
  return object_[key];
}

void JsonFields::invalid(const std::string& key, const std::string& expected) const {
  fail("{}: field '{}' must be {}, got {}", source_, key, expected,
       object_.contains(key) ? json_excerpt(object_[key]) : "nothing");
}

int64_t JsonFields::positive_int(const std::string& key) const {
  const json& v = value(key);
  if (!v.is_number_integer() || v.get<int64_t>() <= 0) invalid(key, "a positive integer");
  return v.get<int64_t>();
}

int64_t JsonFields::positive_int(const std::string& key, int64_t fallback) const {
  return has(key) ? positive_int(key) : fallback;
}

double JsonFields::positive_number(const std::string& key) const {
  const json& v = value(key);
  if (!v.is_number() || !(v.get<double>() > 0)) invalid(key, "a positive number");
  return v.get<double>();
}

double JsonFields::positive_number(const std::string& key, double fallback) const {
  return has(key) ? positive_number(key) : fallback;
}

bool JsonFields::boolean(const std::string& key, bool fallback) const {
  if (!has(key)) return fallback;
  if (!object_[key].is_boolean()) invalid(key, "true or false");
  return object_[key].get<bool>();
}

std::string JsonFields::string(const std::string& key) const {
  const json& v = value(key);
  if (!v.is_string()) invalid(key, "a string");
  return v.get<std::string>();
}

std::string JsonFields::string(const std::string& key, const std::string& fallback) const {
  return has(key) ? string(key) : fallback;
}

const json& JsonFields::object(const std::string& key) const {
  const json& v = value(key);
  if (!v.is_object()) invalid(key, "an object");
  return v;
}

}  // namespace nanoserve
