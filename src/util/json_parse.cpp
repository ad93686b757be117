#include "util/json_parse.h"

#include <fstream>
#include <sstream>
#include <type_traits>
#include <unordered_set>
#include <vector>

#include "util/error.h"

namespace nanoserve {

namespace {

// Builds the value from nlohmann's SAX events, bounding it as it arrives: the depth of every
// container as it opens (nlohmann's parser keeps its own stack, so nothing recurses before this
// check) and, for an order-keeping object, its keys. Such an object is a vector searched linearly,
// and nlohmann's own builder searches it for every key (n^2 / 2 comparisons: 10,000 keys took
// 5.5 s under the sanitizers); here a set of the keys seen answers whether a key repeats, and only
// a repeated key is searched for (the last value wins, in the first one's place, as in nlohmann's).
template <typename Json>
class BoundedBuilder {
 public:
  using string_t = typename Json::string_t;
  static constexpr bool ordered = std::is_same_v<Json, nlohmann::ordered_json>;

  Json root;
  std::string error;  // set when a bound or the syntax stops the parse

  bool null() { return put(nullptr); }
  bool boolean(bool v) { return put(v); }
  bool number_integer(typename Json::number_integer_t v) { return put(v); }
  bool number_unsigned(typename Json::number_unsigned_t v) { return put(v); }
  bool number_float(typename Json::number_float_t v, const string_t&) { return put(v); }
  bool string(string_t& v) { return put(std::move(v)); }
  bool binary(typename Json::binary_t& v) { return put(Json::binary(std::move(v))); }
  bool start_object(size_t) { return open(Json::object()); }
  bool start_array(size_t) { return open(Json::array()); }
  bool end_object() { return close(); }
  bool end_array() { return close(); }

  bool key(string_t& key) {
    Open& top = open_.back();
    auto& object = *top.value->template get_ptr<typename Json::object_t*>();
    if constexpr (ordered) {
      if (object.size() >= kMaxOrderedKeys && !top.keys.count(key)) {
        error = fmt::format("an object has more than {} keys", kMaxOrderedKeys);
        return false;
      }
      if (top.keys.insert(key).second) {
        object.emplace_back(std::move(key), nullptr);
        member_ = &object.back().second;
        return true;
      }
    }
    member_ = &object[key];
    return true;
  }

  bool parse_error(size_t, const std::string&, const nlohmann::detail::exception& e) {
    // A syntax error (parse_error) or a number too large for a double (out_of_range); e.what()
    // reads "[json.exception.parse_error.101] parse error at line 1, column 2: ...".
    const std::string what = e.what();
    const size_t at = what.find("] ");
    error = "not valid JSON: " + (at == std::string::npos ? what : what.substr(at + 2));
    return false;
  }

 private:
  struct Open {
    Json* value;
    std::unordered_set<std::string> keys;  // of an ordered object
  };

  // Places a finished value where the innermost open container expects it.
  Json* place(Json&& value) {
    if (open_.empty()) {
      root = std::move(value);
      return &root;
    }
    Json& top = *open_.back().value;
    if (top.is_array()) {
      top.push_back(std::move(value));
      return &top.back();
    }
    *member_ = std::move(value);
    return member_;
  }

  bool put(Json&& value) {
    place(std::move(value));
    return true;
  }

  bool open(Json&& container) {
    if (open_.size() >= static_cast<size_t>(kMaxJsonDepth)) {
      error = fmt::format("nested deeper than {} levels", kMaxJsonDepth);
      return false;
    }
    // The pointer stays valid while the container is open: nothing is added to its parent until
    // it closes.
    open_.push_back({place(std::move(container)), {}});
    return true;
  }

  bool close() {
    open_.pop_back();
    return true;
  }

  std::vector<Open> open_;
  Json* member_ = nullptr;  // the value the last key names
};

template <typename Json>
Json parse_bounded(std::string_view text, std::string_view source) {
  BoundedBuilder<Json> builder;
  if (!Json::sax_parse(text.begin(), text.end(), &builder)) fail("{}: {}", source, builder.error);
  return std::move(builder.root);
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
