// Typed reads of GGUF metadata, each failing with the key, the type it has and the type expected.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "formats/gguf.h"

namespace nanoserve {

class GgufMetadata {
 public:
  // source names the file in errors.
  GgufMetadata(const GgufContents& contents, std::string source) : contents_(contents), source_(std::move(source)) {}

  bool has(std::string_view key) const { return contents_.find(key) != nullptr; }
  // Absent keys give nullopt; present keys of another type throw.
  std::optional<int64_t> integer(std::string_view key) const;  // any integer type that fits int64
  std::optional<double> number(std::string_view key) const;    // float or integer
  std::optional<bool> boolean(std::string_view key) const;
  std::optional<std::string_view> string(std::string_view key) const;
  int64_t required_integer(std::string_view key) const;
  std::string_view required_string(std::string_view key) const;

  // An array of strings / integers / numbers; empty when absent.
  std::vector<std::string_view> strings(std::string_view key) const;
  std::vector<int64_t> integers(std::string_view key) const;
  std::vector<double> numbers(std::string_view key) const;

  const std::string& source() const { return source_; }

 private:
  const GgufValue* scalar(std::string_view key, bool (*ok)(const GgufValue&), const char* expected) const;
  const GgufValue* array(std::string_view key, const char* expected, bool (*element_ok)(const GgufValue&)) const;
  [[noreturn]] void wrong_type(std::string_view key, const GgufValue& value, const char* expected) const;

  const GgufContents& contents_;
  std::string source_;
};

}  // namespace nanoserve
