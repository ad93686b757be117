// POST /v1/responses (OpenAI's Responses API, text in and out), read into the chat request it
// amounts to: input items become chat messages (function_call items an assistant's tool_calls,
// function_call_output items tool messages), instructions a system message, function tools and
// text.format the chat API's tools and response_format. What a Responses object echoes back is
// kept beside it. Unsupported items (images, files, built-in tools) are a 400 naming them.
#pragma once

#include <functional>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>

namespace nanoserve::server {

struct ResponsesRequest {
  nlohmann::ordered_json chat;          // a /v1/chat/completions body
  nlohmann::ordered_json conversation;  // the messages a continuation starts from (no instructions)
  std::string previous_response_id;
  bool store = true, stream = false;
  nlohmann::ordered_json echo;  // instructions, max_output_tokens, tools, tool_choice, text, ... as given
};

// The stored conversation of a response id, or none when it is unknown.
using ConversationLookup = std::function<std::optional<nlohmann::ordered_json>(const std::string& id)>;

// Throws ApiError (400, or 404 for an unknown previous_response_id) naming the field.
ResponsesRequest parse_responses_request(const nlohmann::ordered_json& body, const ConversationLookup& previous);

}  // namespace nanoserve::server
