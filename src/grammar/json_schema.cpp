#include "grammar/json_schema.h"

#include <fmt/format.h>

#include <array>
#include <cmath>
#include <functional>
#include <iterator>
#include <optional>
#include <set>

#include "grammar/number_range.h"
#include "grammar/regex.h"
#include "util/error.h"
#include "util/json_parse.h"
#include "util/utf8.h"

namespace nanoserve::grammar {
namespace {

using Json = nlohmann::ordered_json;

constexpr int kMaxSchemaDepth = 64;

// Keywords that describe without constraining.
bool is_annotation(const std::string& key) {
  static const std::set<std::string> names = {"title",
                                              "description",
                                              "default",
                                              "examples",
                                              "example",
                                              "$comment",
                                              "$schema",
                                              "$id",
                                              "id",
                                              "deprecated",
                                              "readOnly",
                                              "writeOnly",
                                              "$anchor",
                                              "discriminator",
                                              "externalDocs",
                                              "xml",
                                              "markdownDescription",
                                              "$defs",
                                              "definitions",
                                              "contentMediaType",
                                              "contentEncoding",
                                              "enumDescriptions",
                                              "$vocabulary",
                                              "strict"};
  return names.count(key) || key.rfind("x-", 0) == 0;
}

// Assertions nanoserve cannot enforce in a grammar (yet); refused rather than ignored.
void refuse_unsupported(const Json& s, const std::string& path) {
  static const char* const unsupported[] = {"not",
                                            "if",
                                            "then",
                                            "else",
                                            "dependencies",
                                            "dependentRequired",
                                            "dependentSchemas",
                                            "patternProperties",
                                            "propertyNames",
                                            "maxProperties",
                                            "contains",
                                            "minContains",
                                            "maxContains",
                                            "unevaluatedProperties",
                                            "unevaluatedItems",
                                            "$dynamicRef",
                                            "$recursiveRef",
                                            "multipleOf"};
  for (const char* key : unsupported) {
    if (s.contains(key))
      throw Error(fmt::format("json schema at {}: '{}' is not supported", path.empty() ? "/" : path, key));
  }
  if (s.contains("minProperties") && !is_integer_in(s["minProperties"], 0, 0)) {
    throw Error(fmt::format("json schema at {}: 'minProperties' is not supported", path.empty() ? "/" : path));
  }
  if (s.contains("uniqueItems") && s["uniqueItems"] == true) {
    throw Error(fmt::format("json schema at {}: 'uniqueItems' is not supported", path.empty() ? "/" : path));
  }
}

bool flag(const Json& s, const char* key) { return s.contains(key) && s[key].is_boolean() && s[key].get<bool>(); }

[[noreturn]] void fail(const std::string& path, const std::string& message) {
  throw Error(fmt::format("json schema at {}: {}", path.empty() ? "/" : path, message));
}

bool has_assertions(const Json& s, std::initializer_list<const char*> except) {
  for (auto it = s.begin(); it != s.end(); ++it) {
    const std::string& key = it.key();
    if (is_annotation(key)) continue;
    if (std::find_if(except.begin(), except.end(), [&key](const char* e) { return key == e; }) != except.end())
      continue;
    return true;
  }
  return false;
}

std::string unescape_pointer_token(std::string token) {
  std::string out;
  for (size_t i = 0; i < token.size(); ++i) {
    if (token[i] == '~' && i + 1 < token.size()) {
      out += token[i + 1] == '1' ? '/' : '~';
      ++i;
    } else if (token[i] == '%' && i + 2 < token.size() && std::isxdigit(static_cast<unsigned char>(token[i + 1])) &&
               std::isxdigit(static_cast<unsigned char>(token[i + 2]))) {
      out += static_cast<char>(std::stoi(token.substr(i + 1, 2), nullptr, 16));
      i += 2;
    } else {
      out += token[i];
    }
  }
  return out;
}

const Json& resolve_pointer(const Json& root, const std::string& ref, const std::string& path) {
  if (ref.empty() || ref[0] != '#')
    fail(path, fmt::format("'$ref' to '{}': only references within the schema (#/...) are supported", ref));
  const Json* at = &root;
  size_t pos = 1;
  while (pos < ref.size()) {
    if (ref[pos] != '/') fail(path, fmt::format("'$ref' '{}' is not a JSON pointer", ref));
    const size_t next = ref.find('/', pos + 1);
    const std::string token =
        unescape_pointer_token(ref.substr(pos + 1, next == std::string::npos ? std::string::npos : next - pos - 1));
    if (at->is_object() && at->contains(token)) {
      at = &(*at)[token];
    } else if (at->is_array() && !token.empty() && token.find_first_not_of("0123456789") == std::string::npos &&
               std::stoull(token) < at->size()) {
      at = &(*at)[std::stoull(token)];
    } else {
      fail(path, fmt::format("'$ref' '{}' points at nothing in the schema", ref));
    }
    pos = next == std::string::npos ? ref.size() : next;
  }
  return *at;
}

std::vector<std::string> types_of(const Json& s, const std::string& path) {
  std::vector<std::string> types;
  if (s.contains("type")) {
    const Json& t = s["type"];
    if (t.is_string()) {
      types.push_back(t.get<std::string>());
    } else if (t.is_array()) {
      for (const auto& x : t) {
        if (!x.is_string()) fail(path, "'type' must be a string or a list of strings");
        types.push_back(x.get<std::string>());
      }
    } else {
      fail(path, "'type' must be a string or a list of strings");
    }
  } else {  // no type: values of every type match, each type's keywords constraining its own
    types = {"object", "array", "string", "number", "boolean", "null"};
  }
  if (flag(s, "nullable") && std::find(types.begin(), types.end(), "null") == types.end()) types.push_back("null");
  return types;
}

bool matches_type(const Json& v, const std::vector<std::string>& types) {
  for (const auto& t : types) {
    if ((t == "string" && v.is_string()) || (t == "number" && v.is_number()) || (t == "boolean" && v.is_boolean()) ||
        (t == "null" && v.is_null()) || (t == "object" && v.is_object()) || (t == "array" && v.is_array()) ||
        (t == "integer" &&
         (v.is_number_integer() || (v.is_number_float() && std::floor(v.get<double>()) == v.get<double>())))) {
      return true;
    }
  }
  return false;
}

// JSON Schema `format` values as regular expressions over the string's characters.
const char* format_regex(const std::string& format) {
  static const std::map<std::string, const char*> formats = {
      {"date",
       R"((([0-9]{4}-((0[13578]|1[02])-(0[1-9]|[12][0-9]|3[01])|(0[469]|11)-(0[1-9]|[12][0-9]|30)|02-(0[1-9]|1[0-9]|2[0-8])))|(([0-9]{2}(0[48]|[2468][048]|[13579][26])|(0[48]|[2468][048]|[13579][26])00)-02-29)))"},
      {"time", R"(([01][0-9]|2[0-3]):[0-5][0-9]:([0-5][0-9]|60)(\.[0-9]+)?([Zz]|[+-]([01][0-9]|2[0-3]):[0-5][0-9]))"},
      {"date-time",
       R"((([0-9]{4}-((0[13578]|1[02])-(0[1-9]|[12][0-9]|3[01])|(0[469]|11)-(0[1-9]|[12][0-9]|30)|02-(0[1-9]|1[0-9]|2[0-8])))|(([0-9]{2}(0[48]|[2468][048]|[13579][26])|(0[48]|[2468][048]|[13579][26])00)-02-29))[Tt]([01][0-9]|2[0-3]):[0-5][0-9]:([0-5][0-9]|60)(\.[0-9]+)?([Zz]|[+-]([01][0-9]|2[0-3]):[0-5][0-9]))"},
      {"uuid", R"([0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12})"},
      {"email",
       R"([a-zA-Z0-9!#$%&'*+/=?^_`{|}~-]+(\.[a-zA-Z0-9!#$%&'*+/=?^_`{|}~-]+)*@[a-zA-Z0-9]([a-zA-Z0-9-]{0,61}[a-zA-Z0-9])?(\.[a-zA-Z0-9]([a-zA-Z0-9-]{0,61}[a-zA-Z0-9])?)+)"},
      {"ipv4", R"(((25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])\.){3}(25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9]))"},
      {"hostname", R"([a-zA-Z0-9]([a-zA-Z0-9-]{0,61}[a-zA-Z0-9])?(\.[a-zA-Z0-9]([a-zA-Z0-9-]{0,61}[a-zA-Z0-9])?)*)"},
      {"uri", R"([a-zA-Z][a-zA-Z0-9+.-]*:[^\s"\\<>{}|^`]*)"},
  };
  auto it = formats.find(format);
  return it == formats.end() ? nullptr : it->second;
}

std::optional<double> number_of(const Json& s, const char* key, const std::string& path) {
  if (!s.contains(key) || s[key].is_boolean()) return std::nullopt;
  if (!s[key].is_number()) fail(path, fmt::format("'{}' must be a number", key));
  return s[key].get<double>();
}

std::optional<int32_t> count_of(const Json& s, const char* key, const std::string& path) {
  if (!s.contains(key)) return std::nullopt;
  if (!is_integer_in(s[key], 0, 100000)) fail(path, fmt::format("'{}' must be an integer from 0 to 100000", key));
  return static_cast<int32_t>(s[key].get<int64_t>());
}

Json merge_schemas(Json a, const Json& b, const std::string& path) {
  if (b.is_boolean()) {
    if (b == false) fail(path, "'allOf' includes false: nothing matches");
    return a;
  }
  for (const auto& [key, value] : b.items()) {
    if (!a.contains(key) || is_annotation(key)) {
      if (!a.contains(key)) a[key] = value;
      continue;
    }
    Json& mine = a[key];
    if (mine == value) continue;
    if (key == "properties" && mine.is_object() && value.is_object()) {
      for (const auto& [name, sub] : value.items()) {
        mine[name] = mine.contains(name) ? Json{{"allOf", Json::array({mine[name], sub})}} : sub;
      }
    } else if (key == "required" && mine.is_array() && value.is_array()) {
      for (const auto& r : value) {
        if (std::find(mine.begin(), mine.end(), r) == mine.end()) mine.push_back(r);
      }
    } else if ((key == "minimum" || key == "minLength" || key == "minItems" || key == "exclusiveMinimum") &&
               mine.is_number() && value.is_number()) {
      if (value > mine) mine = value;
    } else if ((key == "maximum" || key == "maxLength" || key == "maxItems" || key == "exclusiveMaximum") &&
               mine.is_number() && value.is_number()) {
      if (value < mine) mine = value;
    } else if (key == "type") {
      Json both = Json::array();
      const Json left = mine.is_array() ? mine : Json::array({mine}),
                 right = value.is_array() ? value : Json::array({value});
      for (const auto& t : left) {
        if (std::find(right.begin(), right.end(), t) != right.end() ||
            (t == "integer" && std::find(right.begin(), right.end(), "number") != right.end()))
          both.push_back(t);
        else if (t == "number" && std::find(right.begin(), right.end(), "integer") != right.end())
          both.push_back("integer");
      }
      if (both.empty()) fail(path, "'allOf' combines types no value has");
      mine = both;
    } else {
      fail(path, fmt::format("'allOf' with two different '{}' is not supported", key));
    }
  }
  return a;
}

// Value types a schema admits, as far as its own keywords say.
std::set<std::string> admitted_types(const Json& s) {
  std::set<std::string> all = {"object", "array", "string", "number", "integer", "boolean", "null"};
  if (!s.is_object()) return s == false ? std::set<std::string>{} : all;
  std::set<std::string> out;
  auto add_value = [&](const Json& v) {
    if (v.is_object()) out.insert("object");
    if (v.is_array()) out.insert("array");
    if (v.is_string()) out.insert("string");
    if (v.is_number()) out.insert({"number", "integer"});
    if (v.is_boolean()) out.insert("boolean");
    if (v.is_null()) out.insert("null");
  };
  if (s.contains("const")) {
    add_value(s["const"]);
    return out;
  }
  if (s.contains("enum") && s["enum"].is_array()) {
    for (const auto& v : s["enum"]) add_value(v);
    return out;
  }
  if (!s.contains("type")) return all;
  const Json types = s["type"].is_array() ? s["type"] : Json::array({s["type"]});
  for (const auto& t : types) {
    if (!t.is_string()) return all;
    out.insert(t.get<std::string>());
    if (t == "number") out.insert("integer");
    if (t == "integer") out.insert("number");
  }
  if (flag(s, "nullable")) out.insert("null");
  return out;
}

// The values a const or enum allows, or nullopt when the schema is not so limited.
std::optional<Json> listed_values(const Json& s) {
  if (!s.is_object()) return std::nullopt;
  if (s.contains("const")) return Json::array({s["const"]});
  if (s.contains("enum") && s["enum"].is_array()) return s["enum"];
  return std::nullopt;
}

bool lists_disjoint(const Json& a, const Json& b) {
  for (const auto& x : a) {
    if (std::find(b.begin(), b.end(), x) != b.end()) return false;
  }
  return true;
}

// Whether no JSON value can match both schemas, by the simple proofs: no type in common, lists of
// values with none in common, or a property both require whose listed values differ.
bool disjoint(const Json& a, const Json& b) {
  std::set<std::string> common;
  const auto ta = admitted_types(a), tb = admitted_types(b);
  std::set_intersection(ta.begin(), ta.end(), tb.begin(), tb.end(), std::inserter(common, common.begin()));
  if (common.empty()) return true;
  const auto la = listed_values(a), lb = listed_values(b);
  if (la && lb && lists_disjoint(*la, *lb)) return true;
  if (common != std::set<std::string>{"object"} || !a.contains("required") || !b.contains("required")) return false;
  for (const auto& name : a["required"]) {
    if (!name.is_string() || std::find(b["required"].begin(), b["required"].end(), name) == b["required"].end())
      continue;
    const std::string key = name.get<std::string>();
    if (!a.contains("properties") || !b.contains("properties") || !a["properties"].is_object() ||
        !b["properties"].is_object())
      continue;
    if (!a["properties"].contains(key) || !b["properties"].contains(key)) continue;
    if (disjoint(a["properties"][key], b["properties"][key])) return true;
  }
  return false;
}

}  // namespace

Expr JsonSchemaCompiler::primitive(const std::string& name) {
  auto it = primitives_.find(name);
  if (it != primitives_.end()) return Expr::ref(it->second);
  const int32_t rule = builder_.declare("json-" + name);
  primitives_[name] = rule;
  auto lit = [](const char* s) { return Expr::literal(s); };
  auto digits = [](int32_t min, int32_t max) { return Expr::repeat(Expr::chars({{'0', '9'}}), min, max); };
  Expr body;
  if (name == "ws") {
    body = Expr::optional(lit(" "));
  } else if (name == "char") {
    body = Expr::alt(
        {Expr::chars(complement({{0, 0x1F}, {'"', '"'}, {'\\', '\\'}})),
         Expr::seq({lit("\\"),
                    Expr::alt({Expr::chars({{'"', '"'},
                                            {'\\', '\\'},
                                            {'/', '/'},
                                            {'b', 'b'},
                                            {'f', 'f'},
                                            {'n', 'n'},
                                            {'r', 'r'},
                                            {'t', 't'}}),
                               Expr::seq({lit("u"),
                                          Expr::repeat(Expr::chars({{'0', '9'}, {'a', 'f'}, {'A', 'F'}}), 4, 4)})})})});
  } else if (name == "string") {
    body = Expr::seq({lit("\""), primitive("string-rest")});
  } else if (name == "string-rest") {  // the characters after the opening quote, and the closing one
    body = Expr::seq({Expr::star(primitive("char")), lit("\"")});
  } else if (name == "integer") {
    body = Expr::seq(
        {Expr::optional(lit("-")), Expr::alt({lit("0"), Expr::seq({Expr::chars({{'1', '9'}}), digits(0, 19)})})});
  } else if (name == "number") {
    body = Expr::seq({primitive("integer"), Expr::optional(Expr::seq({lit("."), digits(1, 20)})),
                      Expr::optional(Expr::seq({Expr::chars({{'e', 'e'}, {'E', 'E'}}),
                                                Expr::optional(Expr::chars({{'+', '+'}, {'-', '-'}})),
                                                digits(1, 2)}))});  // within a double's range
  } else if (name == "boolean") {
    body = Expr::alt({lit("true"), lit("false")});
  } else if (name == "null") {
    body = lit("null");
  } else if (name == "value") {
    body = Expr::alt({primitive("object"), primitive("array"), primitive("string"), primitive("number"),
                      primitive("boolean"), primitive("null")});
  } else if (name == "member") {
    body = Expr::seq({primitive("string"), lit(":"), ws(), primitive("value")});
  } else if (name == "object") {
    body = Expr::seq(
        {lit("{"), ws(),
         Expr::optional(Expr::seq({primitive("member"), Expr::star(Expr::seq({lit(","), ws(), primitive("member")}))})),
         ws(), lit("}")});
  } else if (name == "array") {
    body = Expr::seq(
        {lit("["), ws(),
         Expr::optional(Expr::seq({primitive("value"), Expr::star(Expr::seq({lit(","), ws(), primitive("value")}))})),
         ws(), lit("]")});
  }
  builder_.define(rule, std::move(body));
  return Expr::ref(rule);
}

Expr JsonSchemaCompiler::ws() { return primitive("ws"); }
Expr JsonSchemaCompiler::any_value() { return primitive("value"); }

Expr JsonSchemaCompiler::instance(const Json& schema, const std::string& where) {
  root_ = &schema;
  root_name_ = where;
  return compile(schema, "", 0);
}

Expr JsonSchemaCompiler::reference(const std::string& pointer, const std::string& path) {
  const std::string key = root_name_ + pointer;
  auto it = refs_.find(key);
  if (it != refs_.end()) return Expr::ref(it->second);
  const Json& target = resolve_pointer(*root_, pointer, path);
  const int32_t rule = builder_.declare(fmt::format("ref{}:{}", refs_.size(), key));
  refs_[key] = rule;
  builder_.define(rule, compile(target, pointer.substr(1), 0));
  return Expr::ref(rule);
}

Json JsonSchemaCompiler::with_ref_inlined(const Json& s, const std::string& path) const {
  if (!s.is_object() || !s.contains("$ref")) return s;
  if (!s["$ref"].is_string()) fail(path, "'$ref' must be a string");
  Json own = s;
  own.erase("$ref");
  return merge_schemas(std::move(own), resolve_pointer(*root_, s["$ref"].get<std::string>(), path), path);
}

Json JsonSchemaCompiler::merge_all_of(const Json& s, const std::string& path, int depth) {
  if (depth > kMaxSchemaDepth) fail(path, "'allOf' nested too deeply");
  Json merged = s;
  merged.erase("allOf");
  if (!s["allOf"].is_array()) fail(path, "'allOf' must be a list of schemas");
  for (const Json& part : s["allOf"]) {
    Json sub = with_ref_inlined(part, path);
    if (sub.is_object() && sub.contains("allOf")) sub = merge_all_of(sub, path, depth + 1);
    merged = merge_schemas(std::move(merged), sub, path);
  }
  return merged;
}

Expr JsonSchemaCompiler::compile(const Json& s, const std::string& path, int depth) {
  if (depth > kMaxSchemaDepth) fail(path, fmt::format("nested deeper than {} levels", kMaxSchemaDepth));
  if (s.is_boolean()) return s.get<bool>() ? any_value() : Expr::nothing();
  if (!s.is_object()) fail(path, "a schema must be an object or a boolean");
  refuse_unsupported(s, path);
  if (s.contains("$ref")) {
    if (!s["$ref"].is_string()) fail(path, "'$ref' must be a string");
    if (has_assertions(s, {"$ref"})) return compile(with_ref_inlined(s, path), path, depth + 1);
    return reference(s["$ref"].get<std::string>(), path);
  }
  if (s.contains("allOf")) return compile(merge_all_of(s, path, depth), path, depth + 1);
  for (const char* key : {"anyOf", "oneOf"}) {
    if (!s.contains(key)) continue;
    if (!s[key].is_array() || s[key].empty()) fail(path, fmt::format("'{}' must be a non-empty list of schemas", key));
    Json siblings = s;
    siblings.erase(key);
    const bool merge = has_assertions(siblings, {});
    std::vector<Json> branches;
    for (size_t i = 0; i < s[key].size(); ++i) {
      const std::string where = fmt::format("{}/{}/{}", path, key, i);
      const bool inline_ref = merge || std::string(key) == "oneOf";  // to merge, or to compare branches
      const Json branch = inline_ref ? with_ref_inlined(s[key][i], where) : s[key][i];
      branches.push_back(merge ? merge_schemas(siblings, branch, where) : branch);
    }
    // oneOf means exactly one: run as anyOf only where no value can match two branches.
    for (size_t i = 0; std::string(key) == "oneOf" && i < branches.size(); ++i) {
      for (size_t j = i + 1; j < branches.size(); ++j) {
        if (!disjoint(branches[i], branches[j])) {
          fail(path,
               fmt::format("'oneOf' whose branches {} and {} may match the same value is not supported (anyOf is)", i,
                           j));
        }
      }
    }
    std::vector<Expr> alts;
    for (size_t i = 0; i < branches.size(); ++i)
      alts.push_back(compile(branches[i], fmt::format("{}/{}/{}", path, key, i), depth + 1));
    return Expr::alt(std::move(alts));
  }
  const auto types = types_of(s, path);
  if (s.contains("const")) return Expr::literal(s["const"].dump());
  if (s.contains("enum")) {
    if (!s["enum"].is_array()) fail(path, "'enum' must be a list");
    std::vector<Expr> values;
    for (const auto& v : s["enum"]) {
      if (!s.contains("type") || matches_type(v, types)) values.push_back(Expr::literal(v.dump()));
    }
    if (values.empty()) fail(path, "no value of 'enum' has the schema's type");
    return Expr::alt(std::move(values));
  }
  std::vector<Expr> alts;
  for (const auto& t : types) alts.push_back(compile_typed(s, t, path, depth));
  return Expr::alt(std::move(alts));
}

Expr JsonSchemaCompiler::compile_typed(const Json& s, const std::string& type, const std::string& path, int depth) {
  if (type == "string") return compile_string(s, path);
  if (type == "integer" || type == "number") return compile_number(s, type == "integer", path);
  if (type == "boolean") return primitive("boolean");
  if (type == "null") return primitive("null");
  if (type == "object") return compile_object(s, path, depth);
  if (type == "array") return compile_array(s, path, depth);
  fail(path, fmt::format("unknown type '{}'", type));
}

Expr JsonSchemaCompiler::compile_string(const Json& s, const std::string& path) {
  const auto min = count_of(s, "minLength", path), max = count_of(s, "maxLength", path);
  std::optional<std::string> pattern;
  if (s.contains("pattern")) {
    if (!s["pattern"].is_string()) fail(path, "'pattern' must be a string");
    pattern = s["pattern"].get<std::string>();
  }
  if (s.contains("format") && s["format"].is_string()) {
    const std::string format = s["format"].get<std::string>();
    const char* regex = format_regex(format);
    if (!regex) fail(path, fmt::format("string format '{}' is not supported", format));
    if (pattern) fail(path, "'format' together with 'pattern' is not supported");
    pattern = std::string("^") + regex + "$";
  }
  if (pattern) {
    if (min || max) fail(path, "'pattern' or 'format' together with 'minLength'/'maxLength' is not supported");
    try {
      return Expr::seq({Expr::literal("\""), as_json_string_content(parse_regex(*pattern, RegexMatch::Search)),
                        Expr::literal("\"")});
    } catch (const Error& e) {
      fail(path, e.what());
    }
  }
  if (!min && !max) return primitive("string");
  if (max && *max < min.value_or(0)) fail(path, "'maxLength' is below 'minLength'");
  return Expr::seq(
      {Expr::literal("\""), Expr::repeat(primitive("char"), min.value_or(0), max ? *max : -1), Expr::literal("\"")});
}

Expr JsonSchemaCompiler::compile_number(const Json& s, bool integer, const std::string& path) {
  auto lo = number_of(s, "minimum", path), hi = number_of(s, "maximum", path);
  auto xlo = number_of(s, "exclusiveMinimum", path), xhi = number_of(s, "exclusiveMaximum", path);
  if (flag(s, "exclusiveMinimum") && lo) std::swap(lo, xlo);  // draft 4: a flag on minimum
  if (flag(s, "exclusiveMaximum") && hi) std::swap(hi, xhi);
  if (!lo && !hi && !xlo && !xhi) return primitive(integer ? "integer" : "number");
  constexpr double kLimit = 9.0e18;
  for (const auto* b : {&lo, &hi, &xlo, &xhi}) {
    if (*b && std::fabs(**b) > kLimit) fail(path, "a numeric bound beyond ±9e18 is not supported");
  }
  if (integer) {
    std::optional<int64_t> low, high;
    if (lo) low = static_cast<int64_t>(std::ceil(*lo));
    if (xlo) low = std::max(low.value_or(INT64_MIN), static_cast<int64_t>(std::floor(*xlo)) + 1);
    if (hi) high = static_cast<int64_t>(std::floor(*hi));
    if (xhi) high = std::min(high.value_or(INT64_MAX), static_cast<int64_t>(std::ceil(*xhi)) - 1);
    if (low && high && *low > *high) fail(path, "no integer lies within the bounds");
    return integer_range(low, high);
  }
  for (const auto* b : {&lo, &hi, &xlo, &xhi}) {
    if (*b && std::floor(**b) != **b) fail(path, "a non-integer bound on a number is not supported");
  }
  NumberBounds bounds;
  if (lo) bounds.low = static_cast<int64_t>(*lo);
  if (xlo && (!lo || *xlo >= *lo)) {
    bounds.low = static_cast<int64_t>(*xlo);
    bounds.low_exclusive = true;
  }
  if (hi) bounds.high = static_cast<int64_t>(*hi);
  if (xhi && (!hi || *xhi <= *hi)) {
    bounds.high = static_cast<int64_t>(*xhi);
    bounds.high_exclusive = true;
  }
  if (bounds.low && bounds.high && *bounds.low > *bounds.high) fail(path, "no number lies within the bounds");
  return number_range(bounds);
}

namespace {

// A JSON object key (quotes included) that is none of `names`: a walk down the names' characters
// that may leave at any character no name continues with.
struct KeyTrie {
  bool terminal = false;
  std::map<char32_t, KeyTrie> children;
};

Expr key_not_in(const KeyTrie& node, const Expr& char_rule, const Expr& rest_rule) {
  std::vector<Expr> alts;
  if (!node.terminal) alts.push_back(Expr::literal("\""));
  std::vector<CodeRange> taken = {{0, 0x1F}, {'"', '"'}, {'\\', '\\'}};
  for (const auto& [c, child] : node.children) taken.push_back({c, c});
  alts.push_back(
      Expr::seq({Expr::alt({Expr::chars(complement(taken)), Expr::seq({Expr::literal("\\"), char_rule})}), rest_rule}));
  for (const auto& [c, child] : node.children) {
    alts.push_back(Expr::seq({Expr::chars({{c, c}}), key_not_in(child, char_rule, rest_rule)}));
  }
  return Expr::alt(std::move(alts));
}

}  // namespace

Expr JsonSchemaCompiler::compile_object(const Json& s, const std::string& path, int depth) {
  std::vector<std::pair<std::string, Json>> props;
  if (s.contains("properties")) {
    if (!s["properties"].is_object()) fail(path, "'properties' must be an object");
    for (const auto& [name, sub] : s["properties"].items()) props.emplace_back(name, sub);
  }
  Json additional = s.contains("additionalProperties") ? s["additionalProperties"] : Json(true);
  if (s.contains("required")) {
    if (!s["required"].is_array()) fail(path, "'required' must be a list of names");
  }
  std::set<std::string> required;
  for (const auto& r : s.value("required", Json::array())) {
    if (!r.is_string()) fail(path, "'required' must be a list of names");
    const std::string name = r.get<std::string>();
    required.insert(name);
    if (std::find_if(props.begin(), props.end(), [&](const auto& p) { return p.first == name; }) == props.end()) {
      if (additional == false)
        fail(path,
             fmt::format("required property '{}' is not in 'properties' and additionalProperties is false", name));
      props.emplace_back(name, additional);
    }
  }
  if (props.empty() && additional == true) return primitive("object");
  const int32_t id = counter_++;
  const Expr comma = Expr::seq({Expr::literal(","), ws()});
  // kv[i]: one property's key and value, a rule of its own (it appears in two tails).
  std::vector<Expr> kv;
  for (size_t i = 0; i < props.size(); ++i) {
    const int32_t rule = builder_.declare(fmt::format("object{}-{}", id, props[i].first));
    const std::string where = fmt::format("{}/properties/{}", path, props[i].first);
    builder_.define(rule, Expr::seq({Expr::literal(Json(props[i].first).dump() + ":"), ws(),
                                     compile(props[i].second, where, depth + 1)}));
    kv.push_back(Expr::ref(rule));
  }
  // tail[c]: what may follow the properties written so far; c: whether one was (a comma comes first).
  std::array<Expr, 2> tail = {Expr::empty(), Expr::empty()};
  if (additional != false) {
    KeyTrie names;
    for (const auto& p : props) {
      KeyTrie* node = &names;
      for (size_t pos = 0; pos < p.first.size();) node = &node->children[next_code_point(p.first, pos)];
      node->terminal = true;
    }
    const int32_t rule = builder_.declare(fmt::format("object{}-additional", id));
    builder_.define(
        rule, Expr::seq({Expr::literal("\""), key_not_in(names, primitive("char"), primitive("string-rest")),
                         Expr::literal(":"), ws(), compile(additional, path + "/additionalProperties", depth + 1)}));
    const Expr more = Expr::star(Expr::seq({comma, Expr::ref(rule)}));
    tail = {Expr::optional(Expr::seq({Expr::ref(rule), more})), more};
  }
  for (size_t i = props.size(); i-- > 0;) {
    std::array<Expr, 2> next;
    const int32_t after = builder_.declare(fmt::format("object{}-after-{}", id, i));
    builder_.define(after, std::move(tail[1]));
    for (int c = 1; c >= 0; --c) {
      Expr present = Expr::seq({c ? comma : Expr::empty(), kv[i], Expr::ref(after)});
      Expr absent = c ? Expr::ref(after) : std::move(tail[0]);
      next[static_cast<size_t>(c)] =
          required.count(props[i].first) ? std::move(present) : Expr::alt({std::move(present), std::move(absent)});
    }
    tail = std::move(next);
  }
  return Expr::seq({Expr::literal("{"), ws(), std::move(tail[0]), ws(), Expr::literal("}")});
}

Expr JsonSchemaCompiler::compile_array(const Json& s, const std::string& path, int depth) {
  std::vector<Json> prefix;
  Json rest = true;
  if (s.contains("prefixItems")) {
    if (!s["prefixItems"].is_array()) fail(path, "'prefixItems' must be a list of schemas");
    for (const auto& p : s["prefixItems"]) prefix.push_back(p);
    if (s.contains("items")) rest = s["items"];
  } else if (s.contains("items") && s["items"].is_array()) {  // drafts before 2020-12
    for (const auto& p : s["items"]) prefix.push_back(p);
    if (s.contains("additionalItems")) rest = s["additionalItems"];
  } else if (s.contains("items")) {
    rest = s["items"];
  }
  const int32_t min = count_of(s, "minItems", path).value_or(0);
  int32_t max = count_of(s, "maxItems", path).value_or(-1);
  if (rest == false)
    max = max < 0 ? static_cast<int32_t>(prefix.size()) : std::min<int32_t>(max, static_cast<int32_t>(prefix.size()));
  if (max >= 0 && min > max) fail(path, "'minItems' is above the number of items allowed");
  if (prefix.empty() && rest == true && min == 0 && max < 0) return primitive("array");
  const Expr comma = Expr::seq({Expr::literal(","), ws()});
  std::vector<Expr> prefix_items;
  for (size_t i = 0; i < prefix.size(); ++i)
    prefix_items.push_back(compile(prefix[i], fmt::format("{}/prefixItems/{}", path, i), depth + 1));
  Expr rest_item = Expr::nothing();
  if (max < 0 || max > static_cast<int32_t>(prefix.size())) {
    const int32_t rule = builder_.declare(fmt::format("array{}-item", counter_++));
    builder_.define(rule, compile(rest, path + "/items", depth + 1));
    rest_item = Expr::ref(rule);
  }
  // Items k, k+1, ... after k written ones (k >= 1).
  std::function<Expr(int32_t)> after = [&](int32_t k) -> Expr {
    if (max >= 0 && k >= max) return Expr::empty();
    if (k >= static_cast<int32_t>(prefix.size())) {
      return Expr::repeat(Expr::seq({comma, rest_item}), std::max(0, min - k), max < 0 ? -1 : max - k);
    }
    Expr next = Expr::seq({comma, prefix_items[static_cast<size_t>(k)], after(k + 1)});
    return k >= min ? Expr::optional(std::move(next)) : next;
  };
  Expr items = Expr::empty();
  if (max != 0) {
    Expr first = Expr::seq({prefix.empty() ? rest_item : prefix_items[0], after(1)});
    items = min == 0 ? Expr::optional(std::move(first)) : std::move(first);
  }
  return Expr::seq({Expr::literal("["), ws(), std::move(items), ws(), Expr::literal("]")});
}

Grammar compile_json_schema(const Json& schema) {
  GrammarBuilder builder;
  const int32_t root = builder.declare("root");
  JsonSchemaCompiler compiler(builder);
  builder.define(root, compiler.instance(schema));
  return builder.compile(root);
}

Grammar any_json_object() {
  GrammarBuilder builder;
  const int32_t root = builder.declare("root");
  JsonSchemaCompiler compiler(builder);
  builder.define(root, compiler.instance(Json{{"type", "object"}}));
  return builder.compile(root);
}

}  // namespace nanoserve::grammar
