#include "util/json_parse.h"

#include <fstream>
#include <sstream>
#include <type_traits>
#include <vector>

#include "util/error.h"

namespace nanoserve {

namespace {

struct TooDeep {};
struct TooManyKeys {};

// nlohmann's parser keeps its own stack (it does not recurse); the callback sees the depth of
// every container as it opens, before the value is built, and stops the parse there.
// An ordered object finds a key by a linear search, so one with n keys costs n^2 / 2 string
// comparisons to build: keys are counted per object as they arrive.
template <typename Json>
Json parse_bounded(std::string_view text, std::string_view source) {
  constexpr bool ordered = std::is_same_v<Json, nlohmann::ordered_json>;
  std::vector<size_t> keys(kMaxJsonDepth + 1, 0);  // per open object, by depth
  auto bound = [&keys](int depth, typename Json::parse_event_t event, Json&) {
    if (event == Json::parse_event_t::object_start || event == Json::parse_event_t::array_start) {
      if (depth >= kMaxJsonDepth) throw TooDeep{};
      keys[static_cast<size_t>(depth) + 1] = 0;  // its keys arrive one level down
    } else if (ordered && event == Json::parse_event_t::key && ++keys[static_cast<size_t>(depth)] > kMaxOrderedKeys) {
      throw TooManyKeys{};
    }
    return true;
  };
  try {
    return Json::parse(text.begin(), text.end(), bound);
  } catch (const TooDeep&) {
    fail("{}: nested deeper than {} levels", source, kMaxJsonDepth);
  } catch (const TooManyKeys&) {
    fail("{}: an object has more than {} keys", source, kMaxOrderedKeys);
  } catch (const typename Json::exception& e) {
    // A syntax error (parse_error) or a number too large for a double (out_of_range); e.what()
    // reads "[json.exception.parse_error.101] parse error at line 1, column 2: ...".
    const std::string what = e.what();
    const size_t at = what.find("] ");
    fail("{}: not valid JSON: {}", source, at == std::string::npos ? what : what.substr(at + 2));
  }
}

template <typename Json>
bool integer_in(const Json& value, int64_t low, int64_t high) {
  return value.is_number_integer() && !(value.is_number_unsigned() && value.template get<uint64_t>() > INT64_MAX) &&
         value.template get<int64_t>() >= low && value.template get<int64_t>() <= high;
}

template <typename Json>
std::string excerpt(const Json& value, size_t max_chars) {
  std::string text = value.dump(-1, ' ', false, Json::error_handler_t::replace);
  if (text.size() <= max_chars) return text;
  size_t cut = max_chars;
  while (cut > 0 && (static_cast<unsigned char>(text[cut]) & 0xC0) == 0x80) --cut;  // whole characters
  return text.substr(0, cut) + fmt::format("... ({} bytes)", text.size());
}

}  // namespace

nlohmann::json parse_json(std::string_view text, std::string_view source) {
  return parse_bounded<nlohmann::json>(text, source);
}

nlohmann::ordered_json parse_ordered_json(std::string_view text, std::string_view source) {
  return parse_bounded<nlohmann::ordered_json>(text, source);
}

namespace {

std::string read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) fail("{}: cannot open", path);
  std::ostringstream contents;
  contents << in.rdbuf();
  return contents.str();
}

}  // namespace

nlohmann::json read_json_file(const std::string& path) { return parse_json(read_file(path), path); }
nlohmann::ordered_json read_ordered_json_file(const std::string& path) {
  return parse_ordered_json(read_file(path), path);
}

bool is_integer_in(const nlohmann::json& value, int64_t low, int64_t high) { return integer_in(value, low, high); }
bool is_integer_in(const nlohmann::ordered_json& value, int64_t low, int64_t high) {
  return integer_in(value, low, high);
}

int64_t json_integer(const nlohmann::json& value, int64_t low, int64_t high, std::string_view what) {
  if (!is_integer_in(value, low, high))
    fail("{}: expected an integer in [{}, {}], got {}", what, low, high, json_excerpt(value));
  return value.get<int64_t>();
}

std::string json_excerpt(const nlohmann::json& value, size_t max_chars) { return excerpt(value, max_chars); }
std::string json_excerpt(const nlohmann::ordered_json& value, size_t max_chars) { return excerpt(value, max_chars); }

}  // namespace nanoserve
