#include "model/config.h"

#include <filesystem>

#include "util/error.h"
#include "util/json_fields.h"

namespace nanoserve {

using json = nlohmann::json;

namespace {

RopeScaling parse_scaling_type(const std::string& type, const std::string& source) {
  if (type == "default") return RopeScaling::None;
  if (type == "linear") return RopeScaling::Linear;
  if (type == "llama3") return RopeScaling::Llama3;
  fail("{}: unsupported RoPE scaling type '{}' (supported: default, linear, llama3)", source, type);
}

// The scaling parameters, from either rope_parameters or rope_scaling.
void parse_scaling(const json& params, const std::string& source, RopeConfig& rope) {
  JsonFields f(params, source);
  // transformers < 4.45 spelled the key "type".
  std::string type = f.has("rope_type") ? f.string("rope_type") : f.string("type", "default");
  rope.scaling = parse_scaling_type(type, source);
  switch (rope.scaling) {
    case RopeScaling::None:
      break;
    case RopeScaling::Linear:
      rope.factor = f.positive_number("factor");
      break;
    case RopeScaling::Llama3:
      rope.factor = f.positive_number("factor");
      rope.low_freq_factor = f.positive_number("low_freq_factor");
      rope.high_freq_factor = f.positive_number("high_freq_factor");
      rope.original_max_positions = f.positive_int("original_max_position_embeddings");
      if (rope.high_freq_factor <= rope.low_freq_factor) {
        fail("{}: high_freq_factor ({}) must exceed low_freq_factor ({})", source, rope.high_freq_factor,
             rope.low_freq_factor);
      }
      break;
  }
}

std::vector<int64_t> parse_token_ids(const JsonFields& f, const std::string& key) {
  if (!f.has(key)) return {};
  // Accepts an id or a list of ids, as generation_config.json writes either.
  std::vector<int64_t> ids;
  auto push = [&](const json& v) {
    if (!v.is_number_integer() || v.get<int64_t>() < 0) f.invalid(key, "a token id or a list of token ids");
    ids.push_back(v.get<int64_t>());
  };
  const json& value = f.value(key);
  if (value.is_array()) {
    for (const auto& v : value) push(v);
  } else {
    push(value);
  }
  return ids;
}

std::optional<int64_t> parse_bos(const JsonFields& f) {
  auto ids = parse_token_ids(f, "bos_token_id");
  if (ids.size() > 1) f.invalid("bos_token_id", "a single token id");
  return ids.empty() ? std::nullopt : std::optional<int64_t>(ids[0]);
}

}  // namespace

RopeConfig parse_rope_config(const json& j, const std::string& source) {
  JsonFields f(j, source);
  RopeConfig rope;
  if (f.has("rope_parameters")) {
    const json& params = f.object("rope_parameters");
    parse_scaling(params, source + ": rope_parameters", rope);
    rope.theta = JsonFields(params, source + ": rope_parameters").positive_number("rope_theta", f.positive_number("rope_theta", 10000.0));
  } else {
    rope.theta = f.positive_number("rope_theta", 10000.0);
    if (f.has("rope_scaling")) parse_scaling(f.object("rope_scaling"), source + ": rope_scaling", rope);
  }
  return rope;
}

ModelConfig parse_model_config(const json& j, const std::string& source) {
  JsonFields f(j, source);
  ModelConfig c;
  c.model_type = f.string("model_type");
  c.hidden_size = f.positive_int("hidden_size");
  c.intermediate_size = f.positive_int("intermediate_size");
  c.layers = f.positive_int("num_hidden_layers");
  c.heads = f.positive_int("num_attention_heads");
  c.kv_heads = f.positive_int("num_key_value_heads", c.heads);
  c.vocab_size = f.positive_int("vocab_size");
  c.max_positions = f.positive_int("max_position_embeddings", 2048);
  c.norm_eps = f.positive_number("rms_norm_eps");
  c.tied_embeddings = f.boolean("tie_word_embeddings", false);
  if (f.has("head_dim")) {
    c.head_dim = f.positive_int("head_dim");
  } else {
    if (c.hidden_size % c.heads != 0) {
      fail("{}: hidden_size ({}) is not divisible by num_attention_heads ({}) and head_dim is not given", source,
           c.hidden_size, c.heads);
    }
    c.head_dim = c.hidden_size / c.heads;
  }
  if (c.heads % c.kv_heads != 0) {
    fail("{}: num_attention_heads ({}) must be a multiple of num_key_value_heads ({})", source, c.heads, c.kv_heads);
  }
  if (c.head_dim % 2 != 0) fail("{}: head_dim ({}) must be even for rotary embeddings", source, c.head_dim);
  c.rope = parse_rope_config(j, source);
  c.bos_token_id = parse_bos(f);
  c.eos_token_ids = parse_token_ids(f, "eos_token_id");
  return c;
}

ModelConfig read_model_config(const std::string& path) { return parse_model_config(read_json_file(path), path); }

void apply_generation_config(ModelConfig& cfg, const std::string& path) {
  if (!std::filesystem::exists(path)) return;
  json j = read_json_file(path);
  JsonFields f(j, path);
  if (f.has("bos_token_id")) cfg.bos_token_id = parse_bos(f);
  if (f.has("eos_token_id")) cfg.eos_token_ids = parse_token_ids(f, "eos_token_id");
}

}  // namespace nanoserve
