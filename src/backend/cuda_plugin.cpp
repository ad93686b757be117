#include "backend/cuda_plugin.h"

#include <dlfcn.h>

#include <cstdlib>
#include <filesystem>
#include <mutex>
#include <string>
#include <vector>

#include "util/error.h"

namespace nanoserve {

namespace {

constexpr const char* kPluginName = "libnanoserve_cuda.so";

void* load_plugin() {
#ifndef NANOSERVE_CUDA
  fail(
      "--device cuda: this nanoserve was built without CUDA (configure with nvcc on the PATH or "
      "-DCMAKE_CUDA_COMPILER=/usr/local/cuda/bin/nvcc)");
#endif
  std::string tried;
  auto open = [&](const std::string& path) {
    void* handle = dlopen(path.c_str(), RTLD_NOW | RTLD_LOCAL);
    if (!handle) tried += fmt::format("\n  {}: {}", path, dlerror());
    return handle;
  };
  if (const char* path = std::getenv("NANOSERVE_CUDA_PLUGIN"); path && *path) {
    if (void* handle = open(path)) return handle;
  } else {
    // Beside the executable, beside this library (a shared core), then the library path.
    std::vector<std::filesystem::path> dirs;
    std::error_code ec;
    dirs.push_back(std::filesystem::read_symlink("/proc/self/exe", ec).parent_path());
    Dl_info self{};
    if (dladdr(reinterpret_cast<void*>(&cuda_plugin_symbol), &self) && self.dli_fname) {
      dirs.push_back(std::filesystem::path(self.dli_fname).parent_path());
    }
    for (const auto& dir : dirs) {
      if (!dir.empty() && std::filesystem::exists(dir / kPluginName, ec)) {
        if (void* handle = open((dir / kPluginName).string())) return handle;
      }
    }
    if (void* handle = open(kPluginName)) return handle;
  }
  fail(
      "--device cuda: the CUDA backend could not be loaded; it needs the CUDA runtime, cuBLAS and NCCL on the "
      "library path (LD_LIBRARY_PATH). Tried:{}",
      tried);
}

}  // namespace

void* cuda_plugin_symbol(const char* name) {
  static std::mutex mutex;
  static void* plugin = nullptr;
  const std::lock_guard lock(mutex);
  if (!plugin) plugin = load_plugin();  // a failure is thrown, and the next call tries again
  void* symbol = dlsym(plugin, name);
  if (!symbol) fail("{}: has no entry point {} (a plugin from another build of nanoserve?)", kPluginName, name);
  return symbol;
}

}  // namespace nanoserve
