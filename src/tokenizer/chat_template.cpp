#include "tokenizer/chat_template.h"

#include <filesystem>
#include <fstream>
#include <iterator>

#include "formats/gguf.h"
#include "formats/gguf_metadata.h"
#include "tokenizer/chat/context.h"
#include "tokenizer/chat/parser.h"
#include "util/error.h"
#include "tokenizer/gguf_vocab.h"
#include "util/json_fields.h"
#include "util/json_parse.h"

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

namespace {

// A template's text, where it came from (for error messages), and the bos/eos token strings.
struct TemplateSource {
  std::string text, where, bos, eos;
};

std::string read_text(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) fail("{}: cannot read", path.string());
  return std::string(std::istreambuf_iterator<char>(in), {});
}

// tokenizer_config.json's chat_template (a string, or the "default" of a named list); newer
// transformers save it beside, as chat_template.jinja, or as chat_template.json {"chat_template"}.
TemplateSource directory_template(const std::filesystem::path& directory) {
  TemplateSource out;
  const auto config_path = directory / "tokenizer_config.json";
  nlohmann::json config;
  if (std::filesystem::exists(config_path)) config = read_json_file(config_path.string());
  if (config.is_object()) {
    out.bos = token_text(config, "bos_token");
    out.eos = token_text(config, "eos_token");
  }
  if (config.is_object() && config.contains("chat_template") && !config["chat_template"].is_null()) {
    const auto& t = config["chat_template"];
    out.where = config_path.string();
    if (t.is_string()) {
      out.text = t.get<std::string>();
    } else if (t.is_array()) {  // [{"name": "default", "template": ...}, {"name": "tool_use", ...}]
      for (const auto& named : t) {
        if (!named.is_object() || !named.contains("name") || named["name"] != "default") continue;
        if (!named.contains("template") || !named["template"].is_string()) {
          fail("{}: chat_template's entry named 'default' has no string 'template'", out.where);
        }
        out.text = named["template"].get<std::string>();
      }
      if (out.text.empty()) fail("{}: chat_template lists no template named 'default'", out.where);
    } else {
      fail("{}: chat_template must be a string or a list of named templates", out.where);
    }
  } else if (std::filesystem::exists(directory / "chat_template.jinja")) {
    out.where = (directory / "chat_template.jinja").string();
    out.text = read_text(out.where);
  } else if (std::filesystem::exists(directory / "chat_template.json")) {
    out.where = (directory / "chat_template.json").string();
    const auto j = read_json_file(out.where);
    if (!j.is_object() || !j.contains("chat_template") || !j["chat_template"].is_string()) {
      fail("{}: expected {{\"chat_template\": \"...\"}}", out.where);
    }
    out.text = j["chat_template"].get<std::string>();
  }
  return out;
}

TemplateSource gguf_template(const std::string& path) {
  const GgufFile gguf(path);
  const GgufMetadata m(gguf.contents(), path);
  TemplateSource out;
  if (const auto source = m.string("tokenizer.chat_template")) {
    out.text = std::string(*source);
    out.where = path + ": tokenizer.chat_template";
  }
  const auto tokens = m.strings("tokenizer.ggml.tokens");
  out.bos = gguf_token_text(m, tokens, "tokenizer.ggml.bos_token_id");
  out.eos = gguf_token_text(m, tokens, "tokenizer.ggml.eos_token_id");
  return out;
}

}  // namespace

std::optional<ChatTemplate> ChatTemplate::from_model(const std::string& path, const std::string& override) {
  TemplateSource found = is_gguf_path(path) ? gguf_template(path) : directory_template(path);
  if (!override.empty()) {
    if (std::filesystem::is_regular_file(override)) {
      found.text = read_text(override);
      found.where = override;
    } else if (override.find("{{") != std::string::npos || override.find("{%") != std::string::npos) {
      found.text = override;
      found.where = "--chat-template";
    } else {
      fail("--chat-template {}: no such file, and not a Jinja template (no {{{{ or {{%)", override);
    }
  }
  if (found.where.empty()) return std::nullopt;
  ChatTemplate result = with_context(found.where, [&] { return ChatTemplate(found.text); });
  result.bos_token_ = std::move(found.bos);
  result.eos_token_ = std::move(found.eos);
  return result;
}

}  // namespace nanoserve
