// JSON Schema (draft 2020-12 and the drafts before it) as grammar rules. Objects write their
// properties in the schema's order; whitespace between tokens is at most one space (compact JSON or
// json.dumps' style), so a model can neither stall on whitespace nor drift into odd layouts. Every assertion keyword is
// either enforced or refused by name; annotations (title, description, examples, ...) are ignored.
#pragma once

#include <map>
#include <nlohmann/json.hpp>
#include <string>

#include "grammar/grammar.h"

namespace nanoserve::grammar {

// Adds the rules for a schema's instances to a builder, so that several schemas (the tools of a
// request) can share one grammar.
class JsonSchemaCompiler {
 public:
  explicit JsonSchemaCompiler(GrammarBuilder& builder) : builder_(builder) {}

  // Instances of `schema` (its own $refs resolve within it). Throws Error naming the keyword and
  // where it is, e.g. "json schema at /properties/tags: 'uniqueItems' is not supported".
  Expr instance(const nlohmann::ordered_json& schema, const std::string& where = "");
  Expr any_value();  // any JSON value
  Expr ws();         // optional whitespace between tokens

 private:
  Expr compile(const nlohmann::ordered_json& s, const std::string& path, int depth);
  Expr compile_typed(const nlohmann::ordered_json& s, const std::string& type, const std::string& path, int depth);
  Expr compile_string(const nlohmann::ordered_json& s, const std::string& path);
  Expr compile_number(const nlohmann::ordered_json& s, bool integer, const std::string& path);
  Expr compile_object(const nlohmann::ordered_json& s, const std::string& path, int depth);
  Expr compile_array(const nlohmann::ordered_json& s, const std::string& path, int depth);
  Expr reference(const std::string& pointer, const std::string& path);
  Expr primitive(const std::string& name);
  // A schema with a $ref: its own keywords merged with the target's (nothing to do without one).
  nlohmann::ordered_json with_ref_inlined(const nlohmann::ordered_json& s, const std::string& path) const;
  nlohmann::ordered_json merge_all_of(const nlohmann::ordered_json& s, const std::string& path, int depth);

  GrammarBuilder& builder_;
  const nlohmann::ordered_json* root_ = nullptr;
  std::string root_name_;
  std::map<std::string, int32_t> refs_;  // "#/..." pointer -> its rule
  std::map<std::string, int32_t> primitives_;
  int32_t counter_ = 0;
};

// The grammar of one schema's instances, rooted at a rule named "root".
Grammar compile_json_schema(const nlohmann::ordered_json& schema);

// The grammar of a JSON object of any shape (response_format json_object).
Grammar any_json_object();

}  // namespace nanoserve::grammar
