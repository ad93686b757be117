// Typed reads of JSON object fields, with errors that name the field and the file it came from.
#pragma once

#include <nlohmann/json.hpp>
#include <optional>
#include <string>

#include "util/json_parse.h"

namespace nanoserve {

class JsonFields {
 public:
  // source names the object in errors, e.g. "models/demo/config.json" or "config.json: rope_parameters".
  JsonFields(const nlohmann::json& object, std::string source);

  bool has(const std::string& key) const;  // present and not null
  int64_t positive_int(const std::string& key) const;
  int64_t positive_int(const std::string& key, int64_t fallback) const;
  double positive_number(const std::string& key) const;
  double positive_number(const std::string& key, double fallback) const;
  bool boolean(const std::string& key, bool fallback) const;
  std::string string(const std::string& key) const;
  std::string string(const std::string& key, const std::string& fallback) const;
  const nlohmann::json& object(const std::string& key) const;
  const nlohmann::json& value(const std::string& key) const;  // any type; throws when missing
  const std::string& source() const { return source_; }

  [[noreturn]] void invalid(const std::string& key, const std::string& expected) const;

 private:
  const nlohmann::json& object_;
  std::string source_;
};

}  // namespace nanoserve
