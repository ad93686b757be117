#include "server/tool_calls.h"

#include "grammar/json_schema.h"
#include "util/error.h"
#include "util/json_parse.h"

namespace nanoserve::server {

using Json = nlohmann::ordered_json;

namespace {

constexpr std::string_view kHermesOpen = "<tool_call>", kHermesClose = "</tool_call>";
constexpr std::string_view kPythonTag = "<|python_tag|>", kMistralCalls = "[TOOL_CALLS]";

std::string_view trim(std::string_view s) {
  while (!s.empty() && std::isspace(static_cast<unsigned char>(s.front()))) s.remove_prefix(1);
  while (!s.empty() && std::isspace(static_cast<unsigned char>(s.back()))) s.remove_suffix(1);
  return s;
}

bool starts_with(std::string_view s, std::string_view prefix) { return s.substr(0, prefix.size()) == prefix; }

// One call object: {"name": ..., "arguments" (or "parameters"): {...} or a JSON string}.
std::optional<ToolCall> call_of(const Json& j) {
  if (!j.is_object() || !j.contains("name") || !j["name"].is_string()) return std::nullopt;
  const Json* args = nullptr;
  for (const char* key : {"arguments", "parameters"}) {
    if (j.contains(key)) args = &j[key];
  }
  ToolCall call{j["name"].get<std::string>(), "{}"};
  if (args) call.arguments = args->is_string() ? args->get<std::string>() : args->dump();
  return call;
}

std::optional<Json> parse(std::string_view text) {
  try {
    return parse_ordered_json(text, "tool call");
  } catch (const Error&) {
    return std::nullopt;
  }
}

// Calls written as one JSON object or an array of them.
std::optional<std::vector<ToolCall>> calls_of_json(std::string_view text) {
  auto j = parse(text);
  if (!j) return std::nullopt;
  std::vector<ToolCall> calls;
  const Json list = j->is_array() ? *j : Json::array({*j});
  if (list.empty()) return std::nullopt;
  for (const auto& item : list) {
    auto call = call_of(item);
    if (!call) return std::nullopt;
    calls.push_back(std::move(*call));
  }
  return calls;
}

ParsedReply parse_hermes(std::string_view text) {
  ParsedReply reply;
  std::string content;
  size_t pos = 0;
  while (true) {
    const size_t open = text.find(kHermesOpen, pos);
    if (open == std::string_view::npos) {
      content += text.substr(pos);
      break;
    }
    content += text.substr(pos, open - pos);
    const size_t body = open + kHermesOpen.size();
    size_t close = text.find(kHermesClose, body);
    const size_t end = close == std::string_view::npos ? text.size() : close + kHermesClose.size();
    if (close == std::string_view::npos) close = text.size();
    auto calls = calls_of_json(trim(text.substr(body, close - body)));
    if (!calls) return {std::string(text), {}};
    for (auto& c : *calls) reply.calls.push_back(std::move(c));
    pos = end;
  }
  reply.content = std::string(trim(content));
  return reply;
}

// Objects separated by ';' (how vLLM's llama3_json parser reads parallel calls).
ParsedReply parse_llama3(std::string_view text) {
  std::string_view body = trim(text);
  if (starts_with(body, kPythonTag)) body = trim(body.substr(kPythonTag.size()));
  if (!starts_with(body, "{")) return {std::string(text), {}};
  if (auto calls = calls_of_json(body)) return {"", std::move(*calls)};
  ParsedReply reply;
  size_t start = 0;
  while (start < body.size()) {
    size_t end = body.find(';', start);
    if (end == std::string_view::npos) end = body.size();
    auto calls = calls_of_json(trim(body.substr(start, end - start)));
    if (!calls) return {std::string(text), {}};
    for (auto& c : *calls) reply.calls.push_back(std::move(c));
    start = end + 1;
  }
  return reply;
}

ParsedReply parse_array(std::string_view text) {
  std::string_view body = trim(text);
  if (starts_with(body, kMistralCalls)) body = trim(body.substr(kMistralCalls.size()));
  if (!starts_with(body, "[") && !starts_with(body, "{")) return {std::string(text), {}};
  if (auto calls = calls_of_json(body)) return {"", std::move(*calls)};
  return {std::string(text), {}};
}

}  // namespace

ToolCallFormat detect_tool_call_format(std::string_view chat_template) {
  if (chat_template.find(kHermesOpen) != std::string_view::npos) return ToolCallFormat::Hermes;
  if (chat_template.find(kMistralCalls) != std::string_view::npos) return ToolCallFormat::Mistral;
  if (chat_template.find(kPythonTag) != std::string_view::npos ||
      chat_template.find("\"parameters\"") != std::string_view::npos) {
    return ToolCallFormat::Llama3Json;
  }
  return ToolCallFormat::Generic;
}

std::optional<ToolCallFormat> tool_call_format_named(std::string_view name) {
  if (name == "hermes") return ToolCallFormat::Hermes;
  if (name == "llama3_json") return ToolCallFormat::Llama3Json;
  if (name == "mistral") return ToolCallFormat::Mistral;
  if (name == "generic") return ToolCallFormat::Generic;
  return std::nullopt;
}

const char* tool_call_format_name(ToolCallFormat format) {
  switch (format) {
    case ToolCallFormat::Hermes: return "hermes";
    case ToolCallFormat::Llama3Json: return "llama3_json";
    case ToolCallFormat::Mistral: return "mistral";
    case ToolCallFormat::Generic: return "generic";
  }
  return "?";
}

ParsedReply parse_tool_calls(ToolCallFormat format, std::string_view text) {
  switch (format) {
    case ToolCallFormat::Hermes: return parse_hermes(text);
    case ToolCallFormat::Llama3Json: return parse_llama3(text);
    case ToolCallFormat::Mistral:
    case ToolCallFormat::Generic: return parse_array(text);
  }
  return {std::string(text), {}};
}

grammar::Grammar tool_call_grammar(ToolCallFormat format, const std::vector<ToolFunction>& functions, bool parallel) {
  using grammar::Expr;
  grammar::GrammarBuilder builder;
  const int32_t root = builder.declare("root");
  grammar::JsonSchemaCompiler json(builder);
  const char* args_key = format == ToolCallFormat::Llama3Json ? "parameters" : "arguments";
  std::vector<Expr> alternatives;
  for (const auto& f : functions) {
    const Json parameters = f.parameters.is_null() ? Json{{"type", "object"}} : f.parameters;
    Expr args;
    try {
      args = json.instance(parameters, "tool " + f.name);
    } catch (const Error& e) {
      throw Error("tools: function '" + f.name + "': " + e.what());
    }
    alternatives.push_back(Expr::seq({Expr::literal("{\"name\": " + Json(f.name).dump() + ", \"" + args_key + "\": "),
                                      std::move(args), Expr::literal("}")}));
  }
  const int32_t call_rule = builder.declare("call");
  Expr call = Expr::alt(std::move(alternatives));
  std::string separator = ", ";
  if (format == ToolCallFormat::Hermes) {
    call = Expr::seq({Expr::literal(std::string(kHermesOpen) + "\n"), std::move(call),
                      Expr::literal("\n" + std::string(kHermesClose))});
    separator = "\n";
  } else if (format == ToolCallFormat::Llama3Json) {
    separator = "; ";
  }
  builder.define(call_rule, std::move(call));
  Expr calls = Expr::ref(call_rule);
  if (parallel) calls = Expr::seq({calls, Expr::star(Expr::seq({Expr::literal(separator), Expr::ref(call_rule)}))});
  if (format == ToolCallFormat::Mistral || format == ToolCallFormat::Generic) {
    calls = Expr::seq({Expr::literal("["), std::move(calls), Expr::literal("]")});
  }
  builder.define(root, std::move(calls));
  return builder.compile(root);
}

std::string_view call_trigger(ToolCallFormat format) {
  return format == ToolCallFormat::Hermes ? kHermesOpen : std::string_view();
}

CallStart find_call_start(ToolCallFormat format, std::string_view text) {
  if (format == ToolCallFormat::Hermes) {
    const size_t at = text.find(kHermesOpen);
    if (at != std::string_view::npos) return {at, at};
    // Hold back a tail that could still grow into the marker.
    for (size_t keep = std::min(text.size(), kHermesOpen.size() - 1); keep > 0; --keep) {
      if (kHermesOpen.substr(0, keep) == text.substr(text.size() - keep))
        return {std::string_view::npos, text.size() - keep};
    }
    return {std::string_view::npos, text.size()};
  }
  // The other formats are a call from the first character on, or no call at all.
  const std::string_view body = trim(text);
  const size_t lead = body.empty() ? text.size() : static_cast<size_t>(body.data() - text.data());
  if (body.empty()) return {std::string_view::npos, 0};
  for (std::string_view marker : {kPythonTag, kMistralCalls, std::string_view("{"), std::string_view("[")}) {
    if (starts_with(body, marker)) return {lead, lead};
    if (starts_with(marker, body)) return {std::string_view::npos, 0};
  }
  return {std::string_view::npos, text.size()};
}

}  // namespace nanoserve::server
