#include "model/pooling.h"

#include <cmath>
#include <filesystem>

#include "util/error.h"
#include "util/json_fields.h"

namespace nanoserve {

namespace fs = std::filesystem;

namespace {

// 1_Pooling/config.json: one pooling_mode_* key set among those nanoserve computes, none of the rest.
PoolingMode read_pooling_config(const std::string& path) {
  const auto config = read_json_file(path);
  if (!config.is_object()) fail("{}: expected a JSON object", path);
  const JsonFields f(config, path);
  for (const char* key :
       {"pooling_mode_max_tokens", "pooling_mode_mean_sqrt_len_tokens", "pooling_mode_weightedmean_tokens"}) {
    if (f.boolean(key, false)) fail("{}: {} is not supported (nanoserve pools by last token, mean or CLS)", path, key);
  }
  const std::pair<const char*, PoolingMode> modes[] = {{"pooling_mode_lasttoken", PoolingMode::Last},
                                                       {"pooling_mode_mean_tokens", PoolingMode::Mean},
                                                       {"pooling_mode_cls_token", PoolingMode::Cls}};
  std::optional<PoolingMode> mode;
  for (const auto& [key, value] : modes) {
    if (!f.boolean(key, false)) continue;
    if (mode) fail("{}: more than one pooling mode is set; nanoserve computes one (last token, mean or CLS)", path);
    mode = value;
  }
  if (!mode)
    fail("{}: no pooling mode is set (pooling_mode_lasttoken, pooling_mode_mean_tokens or pooling_mode_cls_token)",
         path);
  return *mode;
}

}  // namespace

const char* pooling_mode_name(PoolingMode mode) {
  switch (mode) {
    case PoolingMode::Last: return "last";
    case PoolingMode::Mean: return "mean";
    case PoolingMode::Cls: return "cls";
  }
  return "?";
}

std::optional<PoolingMode> pooling_mode_named(std::string_view name) {
  for (PoolingMode mode : {PoolingMode::Last, PoolingMode::Mean, PoolingMode::Cls}) {
    if (name == pooling_mode_name(mode)) return mode;
  }
  return std::nullopt;
}

std::optional<Pooling> read_pooling(const std::string& directory) {
  const std::string path = (fs::path(directory) / "modules.json").string();
  if (!fs::exists(path)) return std::nullopt;
  const auto modules = read_json_file(path);
  if (!modules.is_array()) fail("{}: expected a list of modules", path);
  std::optional<Pooling> pooling;
  for (size_t i = 0; i < modules.size(); ++i) {
    const auto& m = modules[i];
    if (!m.is_object() || !m.contains("type") || !m["type"].is_string())
      fail("{}: module {} has no 'type' string", path, i);
    const std::string type = m["type"].get<std::string>();
    const std::string kind = type.substr(type.rfind('.') + 1);
    const std::string at = m.contains("path") && m["path"].is_string() ? m["path"].get<std::string>() : "";
    if (kind == "Transformer" && at.empty()) continue;  // the model in the directory itself
    if (kind == "Pooling" && !pooling) {
      pooling = Pooling{read_pooling_config((fs::path(directory) / at / "config.json").string()), false};
    } else if (kind == "Normalize" && pooling) {
      pooling->normalize = true;
    } else {
      fail(
          "{}: module {} ({}{}) is not supported; nanoserve computes a Transformer at the top of the directory, one "
          "Pooling, then optionally Normalize",
          path, i, type, at.empty() ? "" : " at " + at);
    }
  }
  if (!pooling) fail("{}: no Pooling module (sentence_transformers.models.Pooling)", path);
  return pooling;
}

Pooler::Pooler(Pooling pooling, int64_t hidden, int64_t length)
    : pooling_(pooling), hidden_(hidden), length_(length), sum_(static_cast<size_t>(hidden)) {}

PooledRows Pooler::wants(int64_t first, int64_t count) const {
  switch (pooling_.mode) {
    case PoolingMode::Last: return first + count == length_ ? PooledRows::Last : PooledRows::None;
    case PoolingMode::Mean: return PooledRows::All;
    case PoolingMode::Cls: return first == 0 ? PooledRows::All : PooledRows::None;
  }
  return PooledRows::None;
}

void Pooler::add(int64_t first, int64_t count, const float* rows) {
  if (first == 0) std::fill(sum_.begin(), sum_.end(), 0.0);
  const PooledRows which = wants(first, count);
  if (which == PooledRows::None) return;
  if (pooling_.mode == PoolingMode::Mean) {
    for (int64_t r = 0; r < count; ++r) {
      for (int64_t i = 0; i < hidden_; ++i) sum_[static_cast<size_t>(i)] += rows[r * hidden_ + i];
    }
    return;
  }
  // Last: the chunk's one row is the last token's; CLS: row 0 of the first chunk.
  for (int64_t i = 0; i < hidden_; ++i) sum_[static_cast<size_t>(i)] = rows[i];
}

std::vector<float> Pooler::result() const {
  const double scale = pooling_.mode == PoolingMode::Mean ? 1.0 / static_cast<double>(length_) : 1.0;
  std::vector<float> out(sum_.size());
  for (size_t i = 0; i < out.size(); ++i) out[i] = static_cast<float>(sum_[i] * scale);
  if (pooling_.normalize) normalize_l2(out);
  return out;
}

void normalize_l2(std::vector<float>& v) {
  double squares = 0;
  for (float x : v) squares += static_cast<double>(x) * x;
  // sentence-transformers' Normalize divides by max(norm, 1e-12), as torch's normalize does.
  const double norm = std::max(std::sqrt(squares), 1e-12);
  for (float& x : v) x = static_cast<float>(x / norm);
}

}  // namespace nanoserve
