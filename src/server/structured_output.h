// What a request asks its output to be: a JSON Schema, any JSON object, a regex, one of a list of
// strings or a GBNF grammar (OpenAI's response_format; vLLM's guided_* and structured_outputs;
// llama.cpp's grammar and json_schema), and how it wants tools used (tools, tool_choice,
// parallel_tool_calls). Read from the body with every field checked; compiled through a cache.
#pragma once

#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "grammar/grammar.h"
#include "server/tool_calls.h"

namespace nanoserve::server {

struct OutputConstraint {
  enum class Kind { None, JsonObject, JsonSchema, Regex, Choice, Gbnf };
  Kind kind = Kind::None;
  nlohmann::ordered_json schema;     // JsonSchema
  std::string text;                  // Regex, Gbnf
  std::vector<std::string> choices;  // Choice
  std::string field;                 // the request field it came from, for errors

  std::string cache_key() const;
  grammar::Grammar compile() const;  // throws Error naming the problem
};

struct ToolChoice {
  enum class Mode { None, Auto, Required, Named };
  Mode mode = Mode::Auto;
  std::string name;  // Named
  bool parallel = true;
  std::vector<ToolFunction> functions;  // from `tools`

  bool active() const { return mode != Mode::None && !functions.empty(); }
  bool enforced() const { return mode == Mode::Required || mode == Mode::Named; }
};

// Throws ApiError (400) naming the field: two constraints at once, a wrong shape, an empty choice.
OutputConstraint read_output_constraint(const nlohmann::ordered_json& body);
ToolChoice read_tool_choice(const nlohmann::ordered_json& body);

// The grammar a required or named tool choice runs under, and its cache key.
std::string tool_grammar_key(const ToolChoice& tools, ToolCallFormat format);
grammar::Grammar tool_grammar(const ToolChoice& tools, ToolCallFormat format);

}  // namespace nanoserve::server
