// Tool calling in the formats chat templates teach their models: how a call is written (so that
// tool_choice "required" or a named function can be enforced with a grammar) and how calls are
// found in a reply (so they come back as OpenAI tool_calls).
//   hermes       <tool_call>\n{"name": "f", "arguments": {...}}\n</tool_call>   (Hermes, Qwen 2.5, Qwen 3)
//   llama3_json  {"name": "f", "parameters": {...}}, after an optional <|python_tag|>   (Llama 3.1, 3.2)
//   mistral      [TOOL_CALLS][{"name": "f", "arguments": {...}}]
//   generic      [{"name": "f", "arguments": {...}}]   (templates without a tool format)
#pragma once

#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "grammar/grammar.h"

namespace nanoserve::server {

enum class ToolCallFormat { Hermes, Llama3Json, Mistral, Generic };

// From the chat template's text: the markers it writes calls with.
ToolCallFormat detect_tool_call_format(std::string_view chat_template);
// --tool-call-parser NAME; nullopt for an unknown name.
std::optional<ToolCallFormat> tool_call_format_named(std::string_view name);
const char* tool_call_format_name(ToolCallFormat format);

struct ToolFunction {
  std::string name;
  nlohmann::ordered_json parameters;  // a JSON Schema for the arguments object
};

struct ToolCall {
  std::string name;
  std::string arguments;  // JSON text, as OpenAI returns it
};

struct ParsedReply {
  std::string content;  // the text outside the calls
  std::vector<ToolCall> calls;
};

// The text that opens a call in formats where calls may follow free text (hermes: <tool_call>);
// empty for the formats that are a call from the first character or not at all. With
// tool_choice auto, the call grammar holds from this text on (a lazy grammar).
std::string_view call_trigger(ToolCallFormat format);

// The calls a reply makes; a reply whose calls do not parse is all content.
ParsedReply parse_tool_calls(ToolCallFormat format, std::string_view text);

// Output that is one call (or, when parallel, one or more) of the given functions, arguments
// matching their parameters. Throws Error naming a schema the grammar cannot express.
grammar::Grammar tool_call_grammar(ToolCallFormat format, const std::vector<ToolFunction>& functions, bool parallel);

// Streaming with tool_choice "auto": where in the text so far a call begins (npos: none yet), and
// how much of it is surely content (the rest could still become the start of a call).
struct CallStart {
  size_t call = std::string::npos;
  size_t content = 0;
};
CallStart find_call_start(ToolCallFormat format, std::string_view text);

}  // namespace nanoserve::server
