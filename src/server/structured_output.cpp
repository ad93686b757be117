#include "server/structured_output.h"

#include "server/openai_request.h"

#include <fmt/format.h>

#include "grammar/gbnf.h"
#include "grammar/json_schema.h"
#include "grammar/regex.h"
#include "server/api_error.h"
#include "server/openai_request.h"
#include "util/error.h"
#include "util/json_parse.h"

namespace nanoserve::server {

using Json = nlohmann::ordered_json;

namespace {

// A schema larger than this is refused before it is compiled.
constexpr size_t kMaxConstraintBytes = 1 << 20;

[[noreturn]] void bad(const std::string& field, const std::string& message) {
  throw ApiError(400, field + ": " + message, field);
}

const Json* find(const Json& j, const char* key) {
  auto it = j.find(key);
  return it == j.end() || it->is_null() ? nullptr : &*it;
}

Json schema_value(const Json& v, const std::string& field) {
  if (v.is_string()) {  // vLLM accepts the schema as JSON text too
    try {
      return parse_ordered_json(v.get<std::string>(), field);
    } catch (const Error& e) {
      bad(field, e.what());
    }
  }
  if (!v.is_object() && !v.is_boolean()) bad(field, "expected a JSON Schema (an object)");
  return v;
}

std::string string_value(const Json& v, const std::string& field) {
  if (!v.is_string()) bad(field, "expected a string");
  if (v.get_ref<const std::string&>().size() > kMaxConstraintBytes)
    bad(field, fmt::format("longer than {} bytes", kMaxConstraintBytes));
  return v.get<std::string>();
}

std::vector<std::string> choice_value(const Json& v, const std::string& field) {
  if (!v.is_array() || v.empty()) bad(field, "expected a non-empty array of strings");
  std::vector<std::string> out;
  for (const auto& c : v) {
    if (!c.is_string()) bad(field, "expected a non-empty array of strings");
    out.push_back(c.get<std::string>());
  }
  return out;
}

void set(OutputConstraint& out, OutputConstraint next) {
  if (out.kind != OutputConstraint::Kind::None) {
    bad(next.field, fmt::format("only one output constraint may be given, and {} is set too", out.field));
  }
  out = std::move(next);
}

OutputConstraint of_schema(Json schema, std::string field) {
  if (schema.dump().size() > kMaxConstraintBytes)
    bad(field, fmt::format("the schema is larger than {} bytes", kMaxConstraintBytes));
  OutputConstraint c;
  c.kind = OutputConstraint::Kind::JsonSchema;
  c.schema = std::move(schema);
  c.field = std::move(field);
  return c;
}

void read_response_format(const Json& format, OutputConstraint& out) {
  if (!format.is_object() || !format.contains("type") || !format["type"].is_string()) {
    bad("response_format", "expected {\"type\": \"text\" | \"json_object\" | \"json_schema\", ...}");
  }
  const std::string type = format["type"].get<std::string>();
  if (type == "text") return;
  if (type == "json_object") {
    set(out, {OutputConstraint::Kind::JsonObject, {}, {}, {}, "response_format"});
  } else if (type == "json_schema") {
    const Json* spec = find(format, "json_schema");
    if (!spec || !spec->is_object()) bad("response_format.json_schema", "required: {\"name\", \"schema\", \"strict\"}");
    const Json* schema = find(*spec, "schema");
    // OpenAI allows a json_schema without a schema: any JSON object then.
    if (!schema) {
      set(out, {OutputConstraint::Kind::JsonObject, {}, {}, {}, "response_format"});
    } else {
      set(out,
          of_schema(schema_value(*schema, "response_format.json_schema.schema"), "response_format.json_schema.schema"));
    }
  } else {
    bad("response_format.type", fmt::format("'{}' is not one of text, json_object, json_schema", type));
  }
}

// vLLM's structured_outputs object: {"json" | "regex" | "choice" | "grammar" | "json_object"}.
void read_structured_outputs(const Json& so, OutputConstraint& out) {
  if (!so.is_object()) bad("structured_outputs", "expected an object");
  if (const Json* v = find(so, "json"))
    set(out, of_schema(schema_value(*v, "structured_outputs.json"), "structured_outputs.json"));
  if (const Json* v = find(so, "regex"))
    set(out, {OutputConstraint::Kind::Regex,
              {},
              string_value(*v, "structured_outputs.regex"),
              {},
              "structured_outputs.regex"});
  if (const Json* v = find(so, "choice"))
    set(out, {OutputConstraint::Kind::Choice,
              {},
              {},
              choice_value(*v, "structured_outputs.choice"),
              "structured_outputs.choice"});
  if (const Json* v = find(so, "grammar"))
    set(out, {OutputConstraint::Kind::Gbnf,
              {},
              string_value(*v, "structured_outputs.grammar"),
              {},
              "structured_outputs.grammar"});
  if (const Json* v = find(so, "json_object"); v && *v == true)
    set(out, {OutputConstraint::Kind::JsonObject, {}, {}, {}, "structured_outputs.json_object"});
}

}  // namespace

OutputConstraint read_output_constraint(const Json& body) {
  OutputConstraint out;
  if (const Json* v = find(body, "response_format")) read_response_format(*v, out);
  if (const Json* v = find(body, "guided_json")) set(out, of_schema(schema_value(*v, "guided_json"), "guided_json"));
  if (const Json* v = find(body, "json_schema")) set(out, of_schema(schema_value(*v, "json_schema"), "json_schema"));
  if (const Json* v = find(body, "guided_regex"))
    set(out, {OutputConstraint::Kind::Regex, {}, string_value(*v, "guided_regex"), {}, "guided_regex"});
  if (const Json* v = find(body, "guided_choice"))
    set(out, {OutputConstraint::Kind::Choice, {}, {}, choice_value(*v, "guided_choice"), "guided_choice"});
  if (const Json* v = find(body, "guided_grammar"))
    set(out, {OutputConstraint::Kind::Gbnf, {}, string_value(*v, "guided_grammar"), {}, "guided_grammar"});
  if (const Json* v = find(body, "grammar"))
    set(out, {OutputConstraint::Kind::Gbnf, {}, string_value(*v, "grammar"), {}, "grammar"});
  if (const Json* v = find(body, "structured_outputs")) read_structured_outputs(*v, out);
  return out;
}

std::string OutputConstraint::cache_key() const {
  switch (kind) {
    case Kind::None: return "";
    case Kind::JsonObject: return "json_object";
    case Kind::JsonSchema: return "schema:" + schema.dump();
    case Kind::Regex: return "regex:" + text;
    case Kind::Choice: return "choice:" + Json(choices).dump();
    case Kind::Gbnf: return "gbnf:" + text;
  }
  return "";
}

grammar::Grammar OutputConstraint::compile() const {
  using grammar::Expr;
  switch (kind) {
    case Kind::JsonObject: return grammar::any_json_object();
    case Kind::JsonSchema: return grammar::compile_json_schema(schema);
    case Kind::Gbnf: return grammar::parse_gbnf(text);
    case Kind::Regex:
    case Kind::Choice: {
      grammar::GrammarBuilder builder;
      const int32_t root = builder.declare("root");
      std::vector<Expr> options;
      for (const auto& c : choices) options.push_back(Expr::literal(c));
      builder.define(root, kind == Kind::Regex ? grammar::parse_regex(text, grammar::RegexMatch::Whole)
                                               : Expr::alt(std::move(options)));
      return builder.compile(root);
    }
    case Kind::None: break;
  }
  throw Error("no output constraint to compile");
}

ToolChoice read_tool_choice(const Json& body) {
  ToolChoice out;
  if (const Json* tools = find(body, "tools")) {
    if (!tools->is_array()) bad("tools", "expected an array");
    for (size_t i = 0; i < tools->size(); ++i) {
      const Json& t = (*tools)[i];
      const std::string where = fmt::format("tools[{}]", i);
      if (!has_type(t, "function")) {  // a "type" that is not a string is not a function either
        bad(where + ".type", "only tools of type \"function\" are supported");
      }
      const Json* f = find(t, "function");
      if (!f || !f->is_object() || !f->contains("name") || !(*f)["name"].is_string())
        bad(where + ".function", "expected {\"name\", \"parameters\"}");
      ToolFunction fn{(*f)["name"].get<std::string>(), Json()};
      if (const Json* p = find(*f, "parameters")) fn.parameters = schema_value(*p, where + ".function.parameters");
      out.functions.push_back(std::move(fn));
    }
  }
  if (const Json* choice = find(body, "tool_choice")) {
    if (choice->is_string()) {
      const std::string mode = choice->get<std::string>();
      if (mode == "none")
        out.mode = ToolChoice::Mode::None;
      else if (mode == "auto")
        out.mode = ToolChoice::Mode::Auto;
      else if (mode == "required")
        out.mode = ToolChoice::Mode::Required;
      else
        bad("tool_choice", fmt::format("'{}' is not one of none, auto, required", mode));
    } else if (choice->is_object() && find(*choice, "function") && (*choice)["function"].is_object() &&
               (*choice)["function"].contains("name") && (*choice)["function"]["name"].is_string()) {
      out.mode = ToolChoice::Mode::Named;
      out.name = (*choice)["function"]["name"].get<std::string>();
      const bool known =
          std::any_of(out.functions.begin(), out.functions.end(), [&](const auto& f) { return f.name == out.name; });
      if (!known) bad("tool_choice", fmt::format("names function '{}', which is not among the tools", out.name));
    } else {
      bad("tool_choice",
          "expected \"none\", \"auto\", \"required\" or {\"type\": \"function\", \"function\": {\"name\": ...}}");
    }
    if (out.enforced() && out.functions.empty()) bad("tool_choice", "needs tools to choose from");
  }
  if (const Json* parallel = find(body, "parallel_tool_calls")) {
    if (!parallel->is_boolean()) bad("parallel_tool_calls", "expected a boolean");
    out.parallel = parallel->get<bool>();
  }
  return out;
}

std::string tool_grammar_key(const ToolChoice& tools, ToolCallFormat format) {
  Json functions = Json::array();
  for (const auto& f : tools.functions) {
    if (tools.mode == ToolChoice::Mode::Named && f.name != tools.name) continue;
    functions.push_back({f.name, f.parameters});
  }
  return fmt::format("tools:{}:{}:{}", tool_call_format_name(format),
                     tools.parallel && tools.mode != ToolChoice::Mode::Named, functions.dump());
}

grammar::Grammar tool_grammar(const ToolChoice& tools, ToolCallFormat format) {
  std::vector<ToolFunction> chosen;
  for (const auto& f : tools.functions) {
    if (tools.mode != ToolChoice::Mode::Named || f.name == tools.name) chosen.push_back(f);
  }
  return tool_call_grammar(format, chosen, tools.parallel && tools.mode != ToolChoice::Mode::Named);
}

}  // namespace nanoserve::server
