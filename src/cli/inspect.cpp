// nanoserve inspect: what a checkpoint holds and how nanoserve reads it.
#include <fmt/format.h>

#include <filesystem>
#include <map>

#include "cli/commands.h"
#include "cli/common.h"
#include "formats/gguf.h"
#include "model/rope.h"

namespace nanoserve::cli {

namespace {

const char* scaling_name(RopeScaling s) {
  switch (s) {
    case RopeScaling::None: return "default";
    case RopeScaling::Linear: return "linear";
    case RopeScaling::Llama3: return "llama3";
    case RopeScaling::Yarn: return "yarn";
    case RopeScaling::Dynamic: return "dynamic";
    case RopeScaling::LongRope: return "longrope";
    case RopeScaling::Factors: return "per-frequency factors";
  }
  return "?";
}

std::string rope_summary(const RopeConfig& r) {
  std::string s = fmt::format("theta {}, scaling {}", r.theta, scaling_name(r.scaling));
  if (r.scaling == RopeScaling::Factors) s += fmt::format(" [{:.4g}]", fmt::join(r.freq_factors, ", "));
  if (r.scaling != RopeScaling::None && r.scaling != RopeScaling::Factors) s += fmt::format(", factor {}", r.factor);
  if (r.original_max_positions) s += fmt::format(", original context {}", r.original_max_positions);
  if (r.scaling == RopeScaling::Llama3)
    s += fmt::format(", low/high freq factor {}/{}", r.low_freq_factor, r.high_freq_factor);
  if (r.scaling == RopeScaling::Yarn) s += fmt::format(", beta fast/slow {}/{}", r.beta_fast, r.beta_slow);
  if (r.partial_rotary_factor != 1.0) s += fmt::format(", partial rotary {}", r.partial_rotary_factor);
  return s;
}

const char* norm_name(NormKind k) {
  switch (k) {
    case NormKind::Rms: return "rms";
    case NormKind::RmsPlusOne: return "rms (1 + w)";
    case NormKind::Layer: return "layernorm";
  }
  return "?";
}

// Sliding windows as "layers 0, 2: 4096" runs, or "none".
std::string windows(const ArchSpec& a) {
  std::vector<std::string> sliding;
  for (size_t i = 0; i < a.layers.size(); ++i) {
    if (a.layers[i].sliding_window) sliding.push_back(fmt::format("{}{}", i, a.layers[i].local_rope ? "*" : ""));
  }
  if (sliding.empty()) return "none (full attention on every layer)";
  return fmt::format("{} on layers {}{}", a.layers[std::stoul(sliding[0])].sliding_window, fmt::join(sliding, ","),
                     a.local_rope ? " (* local RoPE)" : "");
}

void print_config(const Model& m) {
  const ModelConfig& c = m.config;
  const ArchSpec& a = m.arch;
  fmt::print("family        {} (model_type {})\n", a.family, c.model_type);
  fmt::print("layers        {}\nhidden_size   {}\nintermediate  {}\n", c.layers, c.hidden_size, c.intermediate_size);
  fmt::print("heads         {} query, {} key/value (GQA {}:1), head_dim {}\n", c.heads, c.kv_heads,
             c.heads / c.kv_heads, c.head_dim);
  fmt::print("vocab_size    {}\ncontext       {}\n", c.vocab_size, c.max_positions);
  fmt::print("norm          {}, eps {}{}\n", norm_name(a.norm), c.norm_eps,
             a.post_norms ? ", plus post-attention and post-MLP norms" : "");
  fmt::print("mlp           {}, {}\n",
             a.mlp == MlpKind::Gated   ? "gated"
             : a.mlp == MlpKind::Plain ? "plain"
                                       : "mixture of experts",
             a.activation == Activation::Silu ? "silu" : "gelu (tanh)");
  if (a.mlp == MlpKind::Moe) {
    fmt::print("experts       {}, top {}{}\n", a.moe.experts, a.moe.top_k,
               a.moe.norm_topk_prob ? ", renormalized" : "");
  }
  fmt::print("biases        q/k/v {}, o {}, mlp {}\n", a.qkv_bias, a.out_bias, a.mlp_bias);
  fmt::print("qk norm       {}\n", a.qk_norm == QkNorm::None      ? "none"
                                   : a.qk_norm == QkNorm::PerHead ? "per head"
                                                                  : "whole projection");
  fmt::print("attention     scale {:.6g}{}{}{}\n", a.attn_scale, a.attn_scale_by_layer ? " / (layer + 1)" : "",
             a.attn_softcap > 0 ? fmt::format(", softcap {}", a.attn_softcap) : "",
             a.clip_qkv > 0 ? fmt::format(", clip qkv {}", a.clip_qkv) : "");
  fmt::print("sliding       {}\n", windows(a));
  if (a.rope) {
    fmt::print(
        "rope          {}{}\n", rope_summary(c.rope),
        a.rope_pairs == RopePairs::Interleaved ? ", interleaved pairs (q/k rows permuted by the GGUF converter)" : "");
    if (a.local_rope) fmt::print("local rope    {}\n", rope_summary(*a.local_rope));
  } else {
    fmt::print("positions     learned ({})\n", c.max_positions);
  }
  if (a.embed_scale != 1.0f) fmt::print("embed scale   {:.6g}\n", a.embed_scale);
  if (a.final_softcap > 0) fmt::print("logit softcap {}\n", a.final_softcap);
  fmt::print("lm_head       {}\n", c.tied_embeddings ? "tied to the embedding" : "separate");
  fmt::print("bos / eos     {} / [{}]\n", c.bos_token_id ? std::to_string(*c.bos_token_id) : "none",
             fmt::join(c.eos_token_ids, ", "));
}

void print_tensors(Model& m) {
  fmt::print("\n{:<30} {:<56} {:<5} {}\n", "tensor", "on disk", "dtype", "shape");
  std::map<std::string, uint64_t> bytes_by_dtype;
  uint64_t params = 0;
  Weights scratch;  // weight_slots needs a target; the names and shapes are what is listed here
  const WeightNames& names = m.names;
  for (const auto& slot : weight_slots(scratch, m.config, m.arch, names)) {
    auto it = m.tensors.find(slot.file_name);
    if (it == m.tensors.end()) it = m.tensors.find(slot.file_name.substr(names.optional_prefix.size()));
    const TensorView& t = it->second;
    fmt::print("{:<30} {:<56} {:<5} {}\n", slot.name, it->first, dtype_name(t.dtype), shape_str(t.shape));
    bytes_by_dtype[std::string(dtype_name(t.dtype))] += t.nbytes;
    params += static_cast<uint64_t>(t.numel());
  }
  if (m.config.tied_embeddings) {
    fmt::print("{:<30} {:<56} alias of embed (same storage, {})\n", "lm_head", "-",
               m.weights.lm_head.weight.data == m.weights.embed.data ? "verified" : "NOT shared");
  }
  for (const auto& name : m.ignored_tensors) fmt::print("{:<30} {:<56} ignored (not a weight)\n", "-", name);
  fmt::print("\nparameters    {} ({:.2f}M)\n", params, static_cast<double>(params) / 1e6);
  for (const auto& [dtype, bytes] : bytes_by_dtype) {
    fmt::print("bytes {:<7} {} ({:.1f} MiB)\n", dtype, bytes, static_cast<double>(bytes) / (1 << 20));
  }
}

// A GGUF file as it stands: its metadata and tensors.
void print_gguf(const std::string& path) {
  const GgufFile file(path);
  const GgufContents& c = file.contents();
  fmt::print("GGUF version {}, {} metadata entries, {} tensors, alignment {}, data at byte {}\n\n", c.version,
             c.metadata.size(), c.tensors.size(), c.alignment, c.data_offset);
  for (const auto& [key, value] : c.metadata)
    fmt::print("{:<40} {:<15} {}\n", key, value.type_name(), value.to_string());
  fmt::print("\n");
  std::map<std::string, std::pair<uint64_t, uint64_t>> by_type;  // type -> tensors, bytes
  uint64_t params = 0;
  for (const auto& t : c.tensors) {
    const auto type = ggml_type_info(static_cast<uint32_t>(t.type))->name;
    fmt::print("{:<32} {:<7} [{}] {} bytes\n", t.name, type, fmt::join(t.dims, ", "), t.bytes);
    by_type[std::string(type)].first += 1;
    by_type[std::string(type)].second += t.bytes;
    params += t.elements();
  }
  fmt::print("\nparameters    {} ({:.2f}M)\n", params, static_cast<double>(params) / 1e6);
  for (const auto& [type, count_bytes] : by_type) {
    fmt::print("{:<7} {} tensors, {} bytes ({:.1f} MiB)\n", type, count_bytes.first, count_bytes.second,
               static_cast<double>(count_bytes.second) / (1 << 20));
  }
}

}  // namespace

void register_inspect(CLI::App& app) {
  auto opt = std::make_shared<ModelOptions>();
  CLI::App* cmd = app.add_subcommand("inspect",
                                     "Show a model's configuration, tensors and parameter count "
                                     "(for a .gguf file, its metadata and tensors first)");
  add_model_options(*cmd, *opt);
  cmd->callback([opt] {
    if (std::filesystem::is_regular_file(opt->model_dir) && is_gguf_path(opt->model_dir)) {
      print_gguf(opt->model_dir);
      fmt::print("\nas nanoserve runs it:\n");
    }
    Model model = load(*opt);
    print_config(model);
    print_tensors(model);
  });
}

}  // namespace nanoserve::cli
