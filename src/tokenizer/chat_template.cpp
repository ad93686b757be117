#include "tokenizer/chat_template.h"

#include <filesystem>

#include "formats/gguf.h"
#include "formats/gguf_metadata.h"
#include "tokenizer/chat/context.h"
#include "tokenizer/chat/parser.h"
#include "util/error.h"
#include "tokenizer/gguf_vocab.h"
#include "util/json_fields.h"

namespace nanoserve {

ChatTemplate::ChatTemplate(const std::string& source)
    : body_(std::make_unique<jinja::Body>(jinja::parse(source))), source_(source) {}
ChatTemplate::~ChatTemplate() = default;
ChatTemplate::ChatTemplate(ChatTemplate&&) noexcept = default;
ChatTemplate& ChatTemplate::operator=(ChatTemplate&&) noexcept = default;

std::string ChatTemplate::render(const nlohmann::ordered_json& context, uint64_t max_work) const {
  nlohmann::ordered_json full = context;
  if (!full.contains("bos_token")) full["bos_token"] = bos_token_;
  if (!full.contains("eos_token")) full["eos_token"] = eos_token_;
  jinja::Value::start_render(max_work);
  jinja::Context ctx(jinja::Value::from_json(full));
  for (const auto& s : *body_) {
    s->exec(ctx);
    ctx.flow = jinja::Context::Flow::Normal;
  }
  return std::move(ctx.output());
}

namespace {
// bos_token / eos_token are a string or an AddedToken object {"content": ...}.
std::string token_text(const nlohmann::json& config, const char* key) {
  if (!config.contains(key)) return "";
  const auto& v = config[key];
  if (v.is_string()) return v.get<std::string>();
  if (v.is_object() && v.contains("content") && v["content"].is_string()) return v["content"].get<std::string>();
  return "";
}
}  // namespace

std::optional<ChatTemplate> ChatTemplate::from_model(const std::string& directory) {
  if (is_gguf_path(directory)) return from_gguf(directory);
  const std::string path = (std::filesystem::path(directory) / "tokenizer_config.json").string();
  if (!std::filesystem::exists(path)) return std::nullopt;
  const auto config = read_json_file(path);
  if (!config.is_object() || !config.contains("chat_template") || config["chat_template"].is_null()) return std::nullopt;
  const auto& t = config["chat_template"];
  std::string source;
  if (t.is_string()) {
    source = t.get<std::string>();
  } else if (t.is_array()) {  // [{"name": "default", "template": ...}, {"name": "tool_use", ...}]
    for (const auto& named : t) {
      if (!named.is_object() || !named.contains("name") || named["name"] != "default") continue;
      if (!named.contains("template") || !named["template"].is_string()) {
        fail("{}: chat_template's entry named 'default' has no string 'template'", path);
      }
      source = named["template"].get<std::string>();
    }
    if (source.empty()) fail("{}: chat_template lists no template named 'default'", path);
  } else {
    fail("{}: chat_template must be a string or a list of named templates", path);
  }
  ChatTemplate result = with_context(path, [&] { return ChatTemplate(source); });
  result.bos_token_ = token_text(config, "bos_token");
  result.eos_token_ = token_text(config, "eos_token");
  return result;
}

std::optional<ChatTemplate> ChatTemplate::from_gguf(const std::string& path) {
  const GgufFile gguf(path);
  const GgufMetadata m(gguf.contents(), path);
  const auto source = m.string("tokenizer.chat_template");
  if (!source) return std::nullopt;
  ChatTemplate result = with_context(path + ": tokenizer.chat_template", [&] { return ChatTemplate(std::string(*source)); });
  const auto tokens = m.strings("tokenizer.ggml.tokens");
  result.bos_token_ = gguf_token_text(m, tokens, "tokenizer.ggml.bos_token_id");
  result.eos_token_ = gguf_token_text(m, tokens, "tokenizer.ggml.eos_token_id");
  return result;
}

}  // namespace nanoserve
