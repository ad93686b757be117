#include "server/openai_request.h"

#include <fmt/format.h>

#include <cmath>
#include <algorithm>
#include <limits>
#include <set>

#include "server/api_error.h"
#include "util/error.h"
#include "util/json_parse.h"

namespace nanoserve::server {

using json = nlohmann::ordered_json;

const char* json_type_name(const json& v) {
  switch (v.type()) {
    case json::value_t::null: return "null";
    case json::value_t::boolean: return "a boolean";
    case json::value_t::string: return "a string";
    case json::value_t::array: return "an array";
    case json::value_t::object: return "an object";
    case json::value_t::number_float: return "a number";
    default: return "an integer";
  }
}

// Whether `v` is an object whose "type" is the string `type`; any other "type" (a number, an
// array) is simply not a match, rather than a JSON type error.
bool has_type(const json& v, const char* type) {
  if (!v.is_object()) return false;
  auto it = v.find("type");
  return it != v.end() && it->is_string() && it->get_ref<const std::string&>() == type;
}

[[noreturn]] void wrong_type(const std::string& param, const char* expected, const json& got) {
  throw ApiError(400, fmt::format("{}: expected {}, got {}", param, expected, json_type_name(got)), param);
}

namespace {

// Typed optional fields of a request body; null counts as absent, as in OpenAI's API.
class Body {
 public:
  explicit Body(const json& j) : j_(j) {}

  const json* find(const char* key) const {
    auto it = j_.find(key);
    return it == j_.end() || it->is_null() ? nullptr : &*it;
  }
  void number(const char* key, float& out) const {
    if (const json* v = find(key)) {
      if (!v->is_number()) wrong_type(key, "a number", *v);
      out = v->get<float>();
    }
  }
  template <typename Int>
  bool integer(const char* key, Int& out) const {
    const json* v = find(key);
    if (!v) return false;
    if (!v->is_number_integer()) wrong_type(key, "an integer", *v);
    if (!is_integer_in(*v, std::numeric_limits<Int>::min(), std::numeric_limits<Int>::max())) {
      throw ApiError(400, fmt::format("{}: {} is out of range", key, v->dump()), key);
    }
    out = static_cast<Int>(v->get<int64_t>());
    return true;
  }
  void boolean(const char* key, bool& out) const {
    if (const json* v = find(key)) {
      if (!v->is_boolean()) wrong_type(key, "a boolean", *v);
      out = v->get<bool>();
    }
  }

 private:
  const json& j_;
};

std::vector<std::string> read_stop(const json& stop) {
  if (stop.is_string()) return {stop.get<std::string>()};
  if (!stop.is_array()) wrong_type("stop", "a string or an array of strings", stop);
  std::vector<std::string> out;
  for (const auto& s : stop) {
    if (!s.is_string()) wrong_type("stop", "a string or an array of strings", s);
    out.push_back(s.get<std::string>());
  }
  if (out.size() > 16) throw ApiError(400, fmt::format("stop: at most 16 stop strings, got {}", out.size()), "stop");
  return out;
}

std::vector<std::pair<int32_t, float>> read_logit_bias(const json& bias) {
  if (!bias.is_object()) wrong_type("logit_bias", "an object mapping token ids to numbers", bias);
  std::vector<std::pair<int32_t, float>> out;
  for (const auto& [key, value] : bias.items()) {
    size_t used = 0;
    long id = -1;
    try {
      id = std::stol(key, &used);
    } catch (const std::exception&) {
      used = 0;
    }
    if (used != key.size() || id < 0 || id > std::numeric_limits<int32_t>::max()) {
      throw ApiError(400, fmt::format("logit_bias: key '{}' is not a token id", key), "logit_bias");
    }
    if (!value.is_number()) wrong_type("logit_bias", "numbers as values", value);
    out.emplace_back(static_cast<int32_t>(id), value.get<float>());
  }
  return out;
}

void read_sampling(const Body& body, GenerationRequest& r) {
  SamplingParams& p = r.params;
  body.number("temperature", p.temperature);
  body.number("top_p", p.top_p);
  body.number("min_p", p.min_p);
  body.number("presence_penalty", p.presence_penalty);
  body.number("frequency_penalty", p.frequency_penalty);
  body.number("repetition_penalty", p.repetition_penalty);
  int32_t top_k = 0;
  if (body.integer("top_k", top_k)) p.top_k = top_k < 0 ? 0 : top_k;  // vLLM: -1 turns it off
  body.integer("n", p.n);
  r.max_tokens_given = body.integer("max_tokens", p.max_tokens);
  if (r.kind == ApiKind::Chat && body.integer("max_completion_tokens", p.max_tokens)) r.max_tokens_given = true;
  int64_t seed = 0;
  if (body.integer("seed", seed)) p.seed = static_cast<uint64_t>(seed);
  if (const json* stop = body.find("stop")) p.stop = read_stop(*stop);
  if (const json* ids = body.find("stop_token_ids")) {
    if (!ids->is_array()) wrong_type("stop_token_ids", "an array of integers", *ids);
    for (const auto& id : *ids) {
      if (!id.is_number_integer()) wrong_type("stop_token_ids", "an array of integers", id);
      if (!is_integer_in(id, 0, std::numeric_limits<int32_t>::max())) {  // never cut to 32 bits
        throw ApiError(400, fmt::format("stop_token_ids: {} is not a token id", id.dump()), "stop_token_ids");
      }
      p.stop_token_ids.push_back(static_cast<int32_t>(id.get<int64_t>()));
    }
  }
  if (const json* bias = body.find("logit_bias")) p.logit_bias = read_logit_bias(*bias);
  body.boolean("ignore_eos", p.ignore_eos);
  body.boolean("stream", r.stream);
  if (const json* options = body.find("stream_options")) {
    if (!options->is_object()) wrong_type("stream_options", "an object", *options);
    if (!r.stream) throw ApiError(400, "stream_options: only allowed when stream is true", "stream_options");
    Body(*options).boolean("include_usage", r.include_usage);
  }
  if (const json* best_of = body.find("best_of")) {
    if (!best_of->is_number_integer() || best_of->get<int64_t>() != p.n) {
      throw ApiError(400, "best_of: only best_of equal to n is supported", "best_of");
    }
  }
}

void read_completion(const Body& body, GenerationRequest& r) {
  const json* prompt = body.find("prompt");
  if (!prompt) throw ApiError(400, "prompt: required", "prompt");
  auto is_ids = [](const json& a) {
    return a.is_array() && !a.empty() &&
           std::all_of(a.begin(), a.end(), [](const json& x) { return x.is_number_integer(); });
  };
  const bool ok = prompt->is_string() || is_ids(*prompt) ||
                  (prompt->is_array() && !prompt->empty() &&
                   (std::all_of(prompt->begin(), prompt->end(), [](const json& x) { return x.is_string(); }) ||
                    std::all_of(prompt->begin(), prompt->end(), is_ids)));
  if (!ok) wrong_type("prompt", "a string, an array of strings, an array of token ids or an array of those", *prompt);
  r.prompt = *prompt;
  body.boolean("echo", r.echo);
  int32_t logprobs = -1;
  if (body.integer("logprobs", logprobs)) r.params.logprobs = logprobs;
  if (r.echo && r.params.logprobs >= 0) {
    throw ApiError(400, "echo with logprobs needs prompt logprobs, which this server does not compute", "echo");
  }
  if (body.find("suffix")) throw ApiError(400, "suffix: not supported by this model", "suffix");
}

// OpenAI clients send a tool call's arguments as JSON text; chat templates (Llama 3.1's `arguments |
// tojson`, Qwen's) expect the object, as vLLM and transformers hand it to them.
void normalize_tool_calls(json& calls, const std::string& where) {
  if (!calls.is_array()) wrong_type(where, "an array", calls);
  for (auto& call : calls) {
    if (!call.is_object() || !call.contains("function") || !call["function"].is_object()) {
      throw ApiError(400, where + ": each tool call needs a \"function\" object", where);
    }
    if (!call["function"].contains("arguments") || !call["function"]["arguments"].is_string()) continue;
    json& args = call["function"]["arguments"];
    try {
      json parsed = parse_ordered_json(args.get<std::string>(), where);
      if (parsed.is_object()) args = std::move(parsed);
    } catch (const Error&) {  // not JSON: the template gets the text as it came
    }
  }
}

void read_chat(const Body& body, GenerationRequest& r) {
  const json* messages = body.find("messages");
  if (!messages) throw ApiError(400, "messages: required", "messages");
  if (!messages->is_array() || messages->empty()) wrong_type("messages", "a non-empty array", *messages);
  r.messages = json::array();
  for (size_t i = 0; i < messages->size(); ++i) {
    const json& m = (*messages)[i];
    const std::string where = fmt::format("messages[{}]", i);
    if (!m.is_object()) wrong_type(where, "an object", m);
    auto role = m.find("role");
    if (role == m.end() || !role->is_string()) throw ApiError(400, where + ".role: required string", where + ".role");
    static const std::set<std::string> roles{"system", "developer", "user", "assistant", "tool"};
    if (!roles.count(role->get<std::string>())) {
      throw ApiError(400, fmt::format("{}.role: unknown role '{}'", where, role->get<std::string>()), where + ".role");
    }
    json copy = m;
    if (copy.contains("tool_calls")) normalize_tool_calls(copy["tool_calls"], where + ".tool_calls");
    auto content = m.find("content");
    if (content != m.end() && !content->is_null())
      copy["content"] = message_text(*content, i);
    else if (role->get<std::string>() != "assistant")
      throw ApiError(400, where + ".content: required", where + ".content");
    r.messages.push_back(std::move(copy));
  }
  bool logprobs = false;
  body.boolean("logprobs", logprobs);
  int32_t top = 0;
  const bool has_top = body.integer("top_logprobs", top);
  if (has_top && !logprobs) throw ApiError(400, "top_logprobs: needs logprobs set to true", "top_logprobs");
  if (logprobs) r.params.logprobs = top;
  body.boolean("add_generation_prompt", r.add_generation_prompt);
  body.boolean("parse_special_tokens", r.parse_special_tokens);
  r.template_extras = json::object();
  if (const json* tools = body.find("tools")) {
    if (!tools->is_array()) wrong_type("tools", "an array", *tools);
    r.template_extras["tools"] = *tools;
  }
  if (const json* kwargs = body.find("chat_template_kwargs")) {
    if (!kwargs->is_object()) wrong_type("chat_template_kwargs", "an object", *kwargs);
    for (const auto& [k, v] : kwargs->items()) r.template_extras[k] = v;
  }
}

}  // namespace

json parse_request_body(std::string_view text) {
  json body;
  try {
    body = parse_ordered_json(text, "the request body");
  } catch (const Error& e) {
    throw ApiError(400, e.what());
  }
  if (!body.is_object()) throw ApiError(400, "the request body must be a JSON object");
  return body;
}

json chat_template_context(const GenerationRequest& request) {
  json context = request.template_extras;
  context["messages"] = request.messages;
  context["add_generation_prompt"] = request.add_generation_prompt;
  return context;
}

std::string message_text(const json& content, size_t index) {
  if (content.is_string()) return content.get<std::string>();
  const std::string where = fmt::format("messages[{}].content", index);
  if (!content.is_array()) wrong_type(where, "a string or an array of text parts", content);
  std::string text;
  for (const auto& part : content) {
    if (!has_type(part, "text") || !part.contains("text") || !part["text"].is_string()) {
      throw ApiError(400, where + ": only parts of type \"text\" with a string \"text\" are supported", where);
    }
    text += part["text"].get<std::string>();
  }
  return text;
}

GenerationRequest parse_generation_request(const json& body, ApiKind kind) {
  if (!body.is_object())
    throw ApiError(400, fmt::format("the request body must be a JSON object, got {}", json_type_name(body)));
  GenerationRequest r;
  r.kind = kind;
  Body fields(body);
  if (const json* model = fields.find("model")) {
    if (!model->is_string()) wrong_type("model", "a string", *model);
    r.model = model->get<std::string>();
  }
  read_sampling(fields, r);
  if (kind == ApiKind::Completion)
    read_completion(fields, r);
  else
    read_chat(fields, r);
  r.constraint = read_output_constraint(body);
  if (kind == ApiKind::Chat) r.tools = read_tool_choice(body);
  if (r.tools.enforced() && r.constraint.kind != OutputConstraint::Kind::None) {
    throw ApiError(
        400, fmt::format("tool_choice: a required or named tool call cannot be combined with {}", r.constraint.field),
        "tool_choice");
  }
  return r;
}

}  // namespace nanoserve::server
