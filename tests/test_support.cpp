#include "test_support.h"

#include <sys/wait.h>
#include <unistd.h>

#include <cmath>
#include <cstring>
#include <fstream>
#include <random>
#include <sstream>

#include "formats/safetensors.h"
#include "util/error.h"

namespace nanoserve::test {

std::vector<uint8_t> random_blocks(DType type, int64_t blocks, std::mt19937& rng) {
  std::vector<int> scale_offsets = {0};  // float16 scales inside a block, set to sensible magnitudes
  if (type == DType::Q4_1 || type == DType::Q5_1 || type == DType::Q4_K || type == DType::Q5_K) scale_offsets = {0, 2};
  if (type == DType::Q6_K) scale_offsets = {208};
  const auto block_bytes = static_cast<int64_t>(dtype_size(type));
  std::uniform_int_distribution<int> byte(0, 255);
  std::uniform_real_distribution<float> scale(0.005f, 0.02f);
  std::vector<uint8_t> bytes(static_cast<size_t>(blocks * block_bytes));
  for (auto& b : bytes) b = static_cast<uint8_t>(byte(rng));
  for (int64_t b = 0; b < blocks; ++b) {
    for (int offset : scale_offsets) {
      const uint16_t half = float_to_f16(scale(rng));
      std::memcpy(bytes.data() + b * block_bytes + offset, &half, 2);
    }
  }
  return bytes;
}

std::string error_of(const std::function<void()>& fn) {
  try {
    fn();
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

namespace fs = std::filesystem;

std::string fixture(const std::string& relative) { return (fs::path(NANOSERVE_FIXTURES) / relative).string(); }

std::string demo_model_dir() { return NANOSERVE_DEFAULT_MODEL; }

Reference read_reference(const std::string& path) {
  SafetensorsFile file(path);
  Reference ref;
  for (const auto& [name, t] : file.tensors()) {
    ref.shapes[name] = t.shape;
    const auto n = static_cast<size_t>(t.numel());
    if (t.dtype == DType::F32) {
      auto& v = ref.floats[name];
      v.resize(n);
      std::memcpy(v.data(), t.data, n * sizeof(float));
    } else if (t.dtype == DType::I64) {
      auto& v = ref.ints[name];
      v.resize(n);
      std::memcpy(v.data(), t.data, n * sizeof(int64_t));
    }
  }
  return ref;
}

void PrintTo(const ModelCase& c, std::ostream* os) { *os << c.name; }

std::vector<int32_t> Reference::ids(const std::string& name) const {
  const auto& v = ints.at(name);
  return {v.begin(), v.end()};
}

std::vector<ModelCase> model_cases() {
  std::vector<ModelCase> out = {{"demo", demo_model_dir(), fixture("demo/reference.safetensors")}};
  for (const char* name : {"tinyllama", "llama32", "sharded", "llama_dynamic", "mistral", "qwen2", "qwen3", "gemma2",
                           "gemma3", "olmoe", "olmoe_norm_topk", "phi3", "gpt2"}) {
    out.push_back({name, fixture(name), fixture(std::string(name) + "/reference.safetensors")});
  }
  // Converted by llama.cpp's convert_hf_to_gguf.py (tests/fixtures/README.md).
  for (const char* name : {"tinyllama", "llama32", "qwen2", "gemma2", "olmoe", "phi3", "gpt2"}) {
    const std::string dir = fixture(std::string("gguf/") + name);
    out.push_back({std::string("gguf_") + name, dir + "/model.gguf", dir + "/reference.safetensors"});
  }
  return out;
}

std::vector<double> pooled(const std::vector<float>& rows, int64_t hidden, PoolingMode mode) {
  const auto tokens = static_cast<int64_t>(rows.size()) / hidden;
  std::vector<double> out(static_cast<size_t>(hidden));
  for (int64_t i = 0; i < hidden; ++i) {
    if (mode == PoolingMode::Mean) {
      for (int64_t t = 0; t < tokens; ++t) out[i] += rows[t * hidden + i] / static_cast<double>(tokens);
    } else {
      out[i] = rows[(mode == PoolingMode::Last ? tokens - 1 : 0) * hidden + i];
    }
  }
  double norm = 0;
  for (double x : out) norm += x * x;
  for (double& x : out) x /= std::sqrt(norm);
  return out;
}

float max_abs_diff(const float* a, const float* b, size_t n) {
  float worst = 0;
  for (size_t i = 0; i < n; ++i) worst = std::max(worst, std::abs(a[i] - b[i]));
  return worst;
}

ScratchDir::ScratchDir() {
  std::random_device rd;
  path_ = fs::temp_directory_path() / ("nanoserve-test-" + std::to_string(::getpid()) + "-" + std::to_string(rd()));
  fs::create_directories(path_);
}

ScratchDir::~ScratchDir() {
  std::error_code ec;
  fs::remove_all(path_, ec);
}

void write_file(const std::string& path, const std::string& bytes) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
}

std::string read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

void copy_dir(const std::string& src, const std::string& dst) {
  fs::create_directories(dst);
  for (const auto& entry : fs::directory_iterator(src)) {
    fs::copy_file(entry.path(), fs::path(dst) / entry.path().filename(), fs::copy_options::overwrite_existing);
  }
}

namespace {
std::string shell_quote(const std::string& s) {
  std::string out = "'";
  for (char c : s) out += c == '\'' ? std::string("'\\''") : std::string(1, c);
  return out + "'";
}
}  // namespace

CommandResult run_cli(const std::vector<std::string>& args, const std::string& stdin_text,
                      const std::vector<std::string>& env) {
  ScratchDir dir;
  write_file(dir.file("stdin"), stdin_text);
  std::string command = "env";
  for (const auto& e : env) command += " " + shell_quote(e);
  command += " " + shell_quote(NANOSERVE_BINARY);
  for (const auto& a : args) command += " " + shell_quote(a);
  command += " <" + dir.file("stdin") + " >" + dir.file("out") + " 2>" + dir.file("err");
  const int status = std::system(command.c_str());
  return {WIFEXITED(status) ? WEXITSTATUS(status) : -1, read_file(dir.file("out")), read_file(dir.file("err"))};
}

}  // namespace nanoserve::test
