// JSON from outside the program (request bodies, config.json, tokenizer.json, safetensors headers)
// is parsed here, with its nesting bounded while it is parsed: no later walk over the value
// (copying, printing, converting) can then recurse deep enough to overflow the stack.
#pragma once

#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>

namespace nanoserve {

// Deeper than any real document (config.json and tokenizer.json nest 5 levels, a tool's JSON
// Schema a few dozen) and far shallower than the stack allows.
constexpr int kMaxJsonDepth = 128;
// Keys in one object of an order-keeping parse (request bodies, schemas): lookups there are linear,
// and code that reads an object looks up its keys (a schema's properties against its required
// list, say), at a cost of the square of its keys. Counted while parsing, which is linear in them.
constexpr size_t kMaxOrderedKeys = 10'000;

// Throws Error: "SOURCE: not valid JSON: ...", "SOURCE: nested deeper than 128 levels", or (ordered
// only) "SOURCE: an object has more than 10000 keys".
nlohmann::json parse_json(std::string_view text, std::string_view source);
nlohmann::ordered_json parse_ordered_json(std::string_view text, std::string_view source);

// The file at `path`, parsed as above; throws Error naming the path.
nlohmann::json read_json_file(const std::string& path);
nlohmann::ordered_json read_ordered_json_file(const std::string& path);  // keys in the file's order

// Whether `value` is a JSON integer within [low, high]; an unsigned one past INT64_MAX never is
// (read as int64 it would wrap negative).
bool is_integer_in(const nlohmann::json& value, int64_t low, int64_t high);
bool is_integer_in(const nlohmann::ordered_json& value, int64_t low, int64_t high);

// A JSON integer within [low, high]. Throws Error naming `what` for anything else: a float (whose
// conversion past the range would be undefined), a string, or an integer out of range.
int64_t json_integer(const nlohmann::json& value, int64_t low, int64_t high, std::string_view what);

// A value as it may appear in an error message: its JSON, cut to about `max_chars` characters.
std::string json_excerpt(const nlohmann::json& value, size_t max_chars = 120);
std::string json_excerpt(const nlohmann::ordered_json& value, size_t max_chars = 120);

}  // namespace nanoserve
