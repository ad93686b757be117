// nanoserve inspect: what a checkpoint holds and how nanoserve reads it.
#include <fmt/format.h>

#include <map>

#include "cli/commands.h"
#include "cli/common.h"
#include "model/rope.h"

namespace nanoserve::cli {

namespace {

const char* scaling_name(RopeScaling s) {
  switch (s) {
    case RopeScaling::None: return "default";
    case RopeScaling::Linear: return "linear";
    case RopeScaling::Llama3: return "llama3";
  }
  return "?";
}

void print_config(const Model& m) {
  const ModelConfig& c = m.config;
  fmt::print("family        {} (model_type {})\n", m.arch.family, c.model_type);
  fmt::print("layers        {}\nhidden_size   {}\nintermediate  {}\n", c.layers, c.hidden_size, c.intermediate_size);
  fmt::print("heads         {} query, {} key/value (GQA {}:1), head_dim {}\n", c.heads, c.kv_heads,
             c.heads / c.kv_heads, c.head_dim);
  fmt::print("vocab_size    {}\ncontext       {}\nnorm          rms, eps {}\nactivation    silu (gated)\n",
             c.vocab_size, c.max_positions, c.norm_eps);
  fmt::print("rope          theta {}, scaling {}", c.rope.theta, scaling_name(c.rope.scaling));
  if (c.rope.scaling != RopeScaling::None) fmt::print(", factor {}", c.rope.factor);
  if (c.rope.scaling == RopeScaling::Llama3) {
    fmt::print(", low_freq_factor {}, high_freq_factor {}, original context {}", c.rope.low_freq_factor,
               c.rope.high_freq_factor, c.rope.original_max_positions);
  }
  fmt::print("\nlm_head       {}\n", c.tied_embeddings ? "tied to the embedding" : "separate");
  fmt::print("bos / eos     {} / [{}]\n", c.bos_token_id ? std::to_string(*c.bos_token_id) : "none",
             fmt::join(c.eos_token_ids, ", "));
}

void print_tensors(Model& m) {
  fmt::print("\n{:<22} {:<52} {:<5} {}\n", "tensor", "on disk", "dtype", "shape");
  std::map<std::string, uint64_t> bytes_by_dtype;
  uint64_t params = 0;
  Weights scratch;  // weight_slots needs a target; the names and shapes are what is listed here
  for (const auto& slot : weight_slots(scratch, m.config, *find_family(m.config.model_type).names)) {
    const TensorView& t = m.checkpoint->tensors().at(slot.hf_name);
    fmt::print("{:<22} {:<52} {:<5} {}\n", slot.name, slot.hf_name, dtype_name(t.dtype), shape_str(t.shape));
    bytes_by_dtype[std::string(dtype_name(t.dtype))] += t.nbytes;
    params += static_cast<uint64_t>(t.numel());
  }
  if (m.config.tied_embeddings) {
    fmt::print("{:<22} {:<52} alias of embed (same storage, {})\n", "lm_head", "-",
               m.weights.lm_head.data == m.weights.embed.data ? "verified" : "NOT shared");
  }
  for (const auto& name : m.ignored_tensors) fmt::print("{:<22} {:<52} ignored (not a weight)\n", "-", name);
  fmt::print("\nparameters    {} ({:.2f}M)\n", params, static_cast<double>(params) / 1e6);
  for (const auto& [dtype, bytes] : bytes_by_dtype) {
    fmt::print("bytes {:<7} {} ({:.1f} MiB)\n", dtype, bytes, static_cast<double>(bytes) / (1 << 20));
  }
}

}  // namespace

void register_inspect(CLI::App& app) {
  auto opt = std::make_shared<ModelOptions>();
  CLI::App* cmd = app.add_subcommand("inspect", "Show a model's configuration, tensors and parameter count");
  add_model_options(*cmd, *opt);
  cmd->callback([opt] {
    Model model = load(*opt);
    print_config(model);
    print_tensors(model);
  });
}

}  // namespace nanoserve::cli
