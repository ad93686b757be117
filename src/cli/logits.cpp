// nanoserve logits: one full forward over given token ids, logits written as safetensors. The entry
// point of the verification harness for any checkpoint.
#include <fmt/format.h>

#include "cli/commands.h"
#include "cli/common.h"
#include "formats/safetensors.h"
#include "model/transformer.h"
#include "util/error.h"

namespace nanoserve::cli {

namespace {

struct LogitsOptions {
  ModelOptions model;
  std::string input, output;
};

std::vector<int32_t> read_input_ids(const std::string& path, int64_t vocab_size) {
  SafetensorsFile file(path);
  auto it = file.tensors().find("input_ids");
  if (it == file.tensors().end()) fail("{}: no tensor 'input_ids'", path);
  const TensorView& t = it->second;
  if (t.dtype != DType::I64 || t.shape.size() != 1 || t.shape[0] == 0) {
    fail("{}: input_ids is {} {}, expected I64 [T] with T > 0", path, dtype_name(t.dtype), shape_str(t.shape));
  }
  std::vector<int32_t> ids(static_cast<size_t>(t.shape[0]));
  for (size_t i = 0; i < ids.size(); ++i) {
    int64_t id;
    std::memcpy(&id, t.data + i * sizeof id, sizeof id);
    if (id < 0 || id >= vocab_size)
      fail("{}: input_ids[{}] = {} is outside the vocabulary of {}", path, i, id, vocab_size);
    ids[i] = static_cast<int32_t>(id);
  }
  return ids;
}

void run_logits(const LogitsOptions& opt) {
  Model model = load(opt.model);
  const auto ids = read_input_ids(opt.input, model.config.vocab_size);
  const auto tokens = static_cast<int64_t>(ids.size());
  if (tokens > model.config.max_positions) {
    fail("{}: {} tokens exceed the model's context of {}", opt.input, tokens, model.config.max_positions);
  }
  const auto backend = open_backend(opt.model, model);
  Transformer transformer(model, backend.get());
  SequenceCache cache = transformer.new_cache(tokens);
  const std::vector<float> logits = transformer.forward(ids, cache, LogitsFor::AllTokens);
  write_safetensors(opt.output, {{"logits", DType::F32, {tokens, model.config.vocab_size}, logits.data()}});
  fmt::print(stderr, "wrote logits [{}, {}] to {}\n", tokens, model.config.vocab_size, opt.output);
}

}  // namespace

void register_logits(CLI::App& app) {
  auto opt = std::make_shared<LogitsOptions>();
  CLI::App* cmd = app.add_subcommand("logits", "Write the logits of one forward pass over given token ids");
  add_model_options(*cmd, opt->model);
  cmd->add_option("--input", opt->input, "safetensors file with an I64 tensor 'input_ids' of shape [T]")->required();
  cmd->add_option("--output", opt->output, "safetensors file to write, with an F32 tensor 'logits' [T, vocab]")
      ->required();
  cmd->callback([opt] { run_logits(*opt); });
}

}  // namespace nanoserve::cli
