#include "server/responses_request.h"

#include <fmt/format.h>

#include "server/api_error.h"
#include "server/openai_request.h"

namespace nanoserve::server {

using json = nlohmann::ordered_json;

namespace {

const std::string* string_field(const json& object, const char* key) {
  auto it = object.find(key);
  return it != object.end() && it->is_string() ? &it->get_ref<const std::string&>() : nullptr;
}

const std::string& required_string(const json& object, const char* key, const std::string& where) {
  const std::string* value = string_field(object, key);
  if (!value) throw ApiError(400, fmt::format("{}.{}: required string", where, key), where + "." + key);
  return *value;
}

// A message's or an output's content: a string, or parts of text (input_text, output_text, text).
std::string content_text(const json& content, const std::string& where) {
  if (content.is_string()) return content.get<std::string>();
  if (!content.is_array()) wrong_type(where, "a string or an array of content parts", content);
  std::string text;
  for (size_t i = 0; i < content.size(); ++i) {
    const json& part = content[i];
    const std::string at = fmt::format("{}[{}]", where, i);
    const std::string* type = part.is_object() ? string_field(part, "type") : nullptr;
    if (!type) throw ApiError(400, at + ": expected a content part with a \"type\"", at);
    if (*type != "input_text" && *type != "output_text" && *type != "text") {
      throw ApiError(
          400, fmt::format("{}: '{}' parts are not supported (text only: input_text, output_text)", at, *type), at);
    }
    text += required_string(part, "text", at);
  }
  return text;
}

// The assistant message a function_call item joins: the last message if it is the assistant's,
// else a new one.
json& assistant_turn(json& messages) {
  if (messages.empty() || messages.back()["role"] != "assistant") {
    messages.push_back({{"role", "assistant"}, {"content", nullptr}});
  }
  return messages.back();
}

void append_item(const json& item, const std::string& where, json& messages) {
  if (!item.is_object()) wrong_type(where, "an object (a message or an item)", item);
  const std::string* type_field = string_field(item, "type");
  const std::string type = type_field ? *type_field : item.contains("role") ? "message" : "";
  if (type == "message") {
    std::string role = required_string(item, "role", where);
    if (role == "developer") role = "system";
    if (role != "user" && role != "system" && role != "assistant") {
      throw ApiError(400, fmt::format("{}.role: '{}' is not a role (user, system, developer, assistant)", where, role),
                     where + ".role");
    }
    if (!item.contains("content")) throw ApiError(400, where + ".content: required", where + ".content");
    messages.push_back({{"role", role}, {"content", content_text(item["content"], where + ".content")}});
  } else if (type == "function_call") {
    json& turn = assistant_turn(messages);
    if (!turn.contains("tool_calls")) turn["tool_calls"] = json::array();
    turn["tool_calls"].push_back(
        {{"id", required_string(item, "call_id", where)},
         {"type", "function"},
         {"function",
          {{"name", required_string(item, "name", where)}, {"arguments", required_string(item, "arguments", where)}}}});
  } else if (type == "function_call_output") {
    if (!item.contains("output")) throw ApiError(400, where + ".output: required", where + ".output");
    messages.push_back({{"role", "tool"},
                        {"tool_call_id", required_string(item, "call_id", where)},
                        {"content", content_text(item["output"], where + ".output")}});
  } else if (type == "reasoning") {
    // A reasoning model's earlier thoughts: chat templates leave them out of the prompt too.
  } else {
    throw ApiError(
        400,
        fmt::format("{}: items of type '{}' are not supported (message, function_call, function_call_output)", where,
                    type.empty() ? "(none)" : type),
        where);
  }
}

json input_messages(const json& input) {
  json messages = json::array();
  if (input.is_string()) {
    if (input.get_ref<const std::string&>().empty()) throw ApiError(400, "input: empty", "input");
    messages.push_back({{"role", "user"}, {"content", input}});
    return messages;
  }
  if (!input.is_array()) wrong_type("input", "a string or an array of items", input);
  if (input.empty()) throw ApiError(400, "input: empty", "input");
  for (size_t i = 0; i < input.size(); ++i) append_item(input[i], fmt::format("input[{}]", i), messages);
  return messages;
}

// Function tools, as the chat API writes them ({"type": "function", "function": {...}}).
json chat_tools(const json& tools) {
  if (!tools.is_array()) wrong_type("tools", "an array", tools);
  json out = json::array();
  for (size_t i = 0; i < tools.size(); ++i) {
    const std::string where = fmt::format("tools[{}]", i);
    const json& tool = tools[i];
    if (!has_type(tool, "function")) {
      const std::string* type = tool.is_object() ? string_field(tool, "type") : nullptr;
      throw ApiError(
          400, fmt::format("{}: '{}' tools are not supported; only function tools", where, type ? *type : "(none)"),
          where);
    }
    json function = {{"name", required_string(tool, "name", where)}};
    for (const char* key : {"description", "parameters", "strict"}) {
      if (tool.contains(key) && !tool[key].is_null()) function[key] = tool[key];
    }
    out.push_back({{"type", "function"}, {"function", std::move(function)}});
  }
  return out;
}

json chat_tool_choice(const json& choice) {
  if (choice.is_string()) return choice;
  if (has_type(choice, "function"))
    return {{"type", "function"}, {"function", {{"name", required_string(choice, "name", "tool_choice")}}}};
  const std::string* type = choice.is_object() ? string_field(choice, "type") : nullptr;
  throw ApiError(400,
                 fmt::format("tool_choice: '{}' is not supported (auto, none, required, or a function)",
                             type ? *type : choice.dump()),
                 "tool_choice");
}

// text.format as the chat API's response_format; none for plain text.
std::optional<json> response_format(const json& text) {
  if (!text.is_object()) wrong_type("text", "an object", text);
  if (!text.contains("format") || text["format"].is_null()) return std::nullopt;
  const json& format = text["format"];
  if (has_type(format, "text")) return std::nullopt;
  if (has_type(format, "json_object")) return json{{"type", "json_object"}};
  if (has_type(format, "json_schema")) {
    const std::string* name = string_field(format, "name");
    json schema = {{"name", name ? *name : "response"}};
    for (const char* key : {"schema", "strict", "description"}) {
      if (format.contains(key)) schema[key] = format[key];
    }
    return json{{"type", "json_schema"}, {"json_schema", std::move(schema)}};
  }
  throw ApiError(400, "text.format: expected a format of type text, json_object or json_schema", "text.format");
}

}  // namespace

ResponsesRequest parse_responses_request(const json& body, const ConversationLookup& previous) {
  if (!body.is_object())
    throw ApiError(400, fmt::format("the request body must be a JSON object, got {}", json_type_name(body)));
  ResponsesRequest r;
  const auto given = [&](const char* key) { return body.contains(key) && !body[key].is_null(); };
  if (given("background") && body["background"] != false) {
    throw ApiError(400, "background: responses in the background are not supported", "background");
  }
  for (const char* key : {"store", "stream"}) {
    if (given(key) && !body[key].is_boolean()) wrong_type(key, "a boolean", body[key]);
  }
  r.store = !given("store") || body["store"].get<bool>();
  r.stream = given("stream") && body["stream"].get<bool>();
  if (!given("input")) throw ApiError(400, "input: required", "input");
  if (given("previous_response_id")) {
    if (!body["previous_response_id"].is_string())
      wrong_type("previous_response_id", "a string", body["previous_response_id"]);
    r.previous_response_id = body["previous_response_id"].get<std::string>();
    auto stored = previous(r.previous_response_id);
    if (!stored) {
      throw ApiError(404,
                     fmt::format("previous_response_id: no stored response '{}' (responses are kept in memory, "
                                 "the most recent first, and only with store: true)",
                                 r.previous_response_id.substr(0, 200)),
                     "previous_response_id", "invalid_request_error", "response_not_found");
    }
    r.conversation = std::move(*stored);
  } else {
    r.conversation = json::array();
  }
  for (auto& message : input_messages(body["input"])) r.conversation.push_back(std::move(message));

  json messages = json::array();
  if (given("instructions")) {
    if (!body["instructions"].is_string()) wrong_type("instructions", "a string", body["instructions"]);
    messages.push_back({{"role", "system"}, {"content", body["instructions"]}});
  }
  for (const auto& m : r.conversation) messages.push_back(m);
  r.chat = {{"messages", std::move(messages)}, {"stream", false}};
  if (given("max_output_tokens")) {
    if (!body["max_output_tokens"].is_number_integer() || body["max_output_tokens"].get<int64_t>() < 1) {
      throw ApiError(
          400, fmt::format("max_output_tokens: expected a positive integer, got {}", body["max_output_tokens"].dump()),
          "max_output_tokens");
    }
    r.chat["max_tokens"] = body["max_output_tokens"];
  }
  if (given("tools") && !body["tools"].empty()) r.chat["tools"] = chat_tools(body["tools"]);
  if (given("tool_choice")) r.chat["tool_choice"] = chat_tool_choice(body["tool_choice"]);
  if (given("text")) {
    if (auto format = response_format(body["text"])) r.chat["response_format"] = std::move(*format);
  }
  // Sampling as the chat API reads it (vLLM's extensions too).
  for (const char* key : {"temperature", "top_p", "top_k", "min_p", "seed", "stop", "frequency_penalty",
                          "presence_penalty", "repetition_penalty", "parallel_tool_calls", "chat_template_kwargs"}) {
    if (given(key)) r.chat[key] = body[key];
  }
  for (const char* key : {"instructions", "max_output_tokens", "tools", "tool_choice", "text", "temperature", "top_p",
                          "parallel_tool_calls", "metadata", "user"}) {
    r.echo[key] = given(key) ? body[key] : json(nullptr);
  }
  if (!given("model"))
    r.chat["model"] = nullptr;
  else
    r.chat["model"] = body["model"];
  return r;
}

}  // namespace nanoserve::server
