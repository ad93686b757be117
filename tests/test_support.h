// Shared by the tests: fixture paths, reference tensors, scratch directories, running the CLI.
#pragma once

#include <gtest/gtest.h>

#include <cstdint>
#include <filesystem>
#include <functional>
#include <map>
#include <random>
#include <string>
#include <vector>

#include "formats/dtype.h"
#include "model/pooling.h"

namespace nanoserve::test {

std::string fixture(const std::string& relative);  // tests/fixtures/<relative>
std::string demo_model_dir();                      // models/demo
// The message of the Error that fn throws, or "" when it throws none.
std::string error_of(const std::function<void()>& fn);

// Every tensor of a reference.safetensors file, widened: F32 as float, I64 as int64.
struct Reference {
  std::map<std::string, std::vector<float>> floats;
  std::map<std::string, std::vector<int64_t>> ints;
  std::map<std::string, std::vector<int64_t>> shapes;
  std::vector<int32_t> ids(const std::string& name) const;  // an I64 tensor as token ids
};
Reference read_reference(const std::string& path);

// A model with Hugging Face reference outputs (tests/fixtures/README.md).
struct ModelCase {
  std::string name;
  std::string model_path;  // a Hugging Face directory or a GGUF file
  std::string reference;   // its reference.safetensors
};
void PrintTo(const ModelCase& c, std::ostream* os);
// The demo model, every architecture fixture, and the GGUF conversions of them.
std::vector<ModelCase> model_cases();

float max_abs_diff(const float* a, const float* b, size_t n);
// Blocks of a quantized type: random bytes (every byte pattern is a valid block) with float16
// scales of about 0.01.
std::vector<uint8_t> random_blocks(DType type, int64_t blocks, std::mt19937& rng);

// Rows [tokens, hidden] (a model's final norm) pooled as sentence-transformers pools them, then
// scaled to unit length, in double: what an embedding of them should be.
std::vector<double> pooled(const std::vector<float>& rows, int64_t hidden, PoolingMode mode);

// A fresh directory under the system temp dir, removed with the object.
class ScratchDir {
 public:
  ScratchDir();
  ~ScratchDir();
  const std::filesystem::path& path() const { return path_; }
  std::string file(const std::string& name) const { return (path_ / name).string(); }

 private:
  std::filesystem::path path_;
};

void write_file(const std::string& path, const std::string& bytes);
std::string read_file(const std::string& path);

// Copies a model directory (following the index of shards) into dst.
void copy_dir(const std::string& src, const std::string& dst);

struct CommandResult {
  int exit_code;
  std::string out, err;
};
// Runs the nanoserve binary with the given arguments (shell-quoted here), capturing both streams.
// env: "NAME=value" settings for the child only.
CommandResult run_cli(const std::vector<std::string>& args, const std::string& stdin_text = "",
                      const std::vector<std::string>& env = {});

}  // namespace nanoserve::test
