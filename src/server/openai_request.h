// The bodies of POST /v1/completions and /v1/chat/completions, read into what the engine runs.
// Every field is type-checked and a wrong one is an ApiError naming it; ranges are checked by
// SamplingParams::validate at submission. Unknown fields are ignored, as OpenAI's API does.
#pragma once

#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "engine/request.h"
#include "server/structured_output.h"

namespace nanoserve::server {

enum class ApiKind { Completion, Chat };

struct GenerationRequest {
  ApiKind kind = ApiKind::Completion;
  std::string model;                       // as the client named it (may be empty)
  nlohmann::ordered_json prompt;           // completions: string, [string], [int] or [[int]]
  nlohmann::ordered_json messages;         // chat: the conversation
  nlohmann::ordered_json template_extras;  // chat: tools and chat_template_kwargs, passed to the template
  bool add_generation_prompt = true;
  bool parse_special_tokens = false;  // chat: special-token text typed in messages becomes control tokens
  SamplingParams params;
  bool max_tokens_given = false;  // chat defaults to the rest of the context
  bool stream = false, include_usage = false, echo = false;
  OutputConstraint constraint;                           // structured output; compiled into params.grammar by the API
  ToolChoice tools;                                      // chat: the functions and how they may be called
  ToolCallFormat tool_format = ToolCallFormat::Generic;  // how the model writes calls (set by the API)
};

// A request body as JSON (nesting bounded, util/json_parse.h); throws ApiError (400) unless it is
// a JSON object. Ordered, so that messages and tools reach the chat template as the client wrote them.
nlohmann::ordered_json parse_request_body(std::string_view body);

// body: the parsed JSON. Throws ApiError (400) naming the offending field.
// Ordered: the conversation reaches the chat template with its keys in the client's order.
GenerationRequest parse_generation_request(const nlohmann::ordered_json& body, ApiKind kind);

// What a chat request hands the template: template_extras with messages and add_generation_prompt,
// keys in the client's order.
nlohmann::ordered_json chat_template_context(const GenerationRequest& request);

// Reading request bodies, for the API's parsers: a value's JSON type in words ("an array"),
// whether an object's "type" is `type`, and the 400 for a field of the wrong type.
const char* json_type_name(const nlohmann::ordered_json& v);
bool has_type(const nlohmann::ordered_json& v, const char* type);
[[noreturn]] void wrong_type(const std::string& param, const char* expected, const nlohmann::ordered_json& got);

// The text of a chat message's content: a string, or a list of {"type": "text", "text": ...} parts.
std::string message_text(const nlohmann::ordered_json& content, size_t index);

}  // namespace nanoserve::server
