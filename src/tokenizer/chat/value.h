// Values of the chat-template language (a Jinja subset): Python-like semantics for truthiness,
// equality, printing and JSON. Lists and dicts have reference semantics, as in Python, which is what
// `namespace()` and `list.append` rely on.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <utility>
#include <vector>

namespace nanoserve::jinja {

struct Value;
using Array = std::vector<Value>;
using Object = std::vector<std::pair<std::string, Value>>;  // insertion order, as Python dicts
struct Arguments;
using Function = std::function<Value(Arguments&)>;

struct Value {
  enum class Kind { Undefined, None, Bool, Int, Float, String, Array, Object, Function };
  Kind kind = Kind::Undefined;
  bool boolean = false;
  int64_t integer = 0;
  double number = 0;
  std::string string;
  std::shared_ptr<jinja::Array> array;
  std::shared_ptr<jinja::Object> object;
  std::shared_ptr<jinja::Function> function;

  static Value none() {
    Value v;
    v.kind = Kind::None;
    return v;
  }
  static Value from(bool b) {
    Value v;
    v.kind = Kind::Bool;
    v.boolean = b;
    return v;
  }
  static Value from(int64_t i) {
    Value v;
    v.kind = Kind::Int;
    v.integer = i;
    return v;
  }
  static Value from(double d) {
    Value v;
    v.kind = Kind::Float;
    v.number = d;
    return v;
  }
  static Value from(std::string s) {
    check_string(s.size());
    Value v;
    v.kind = Kind::String;
    v.string = std::move(s);
    return v;
  }
  static Value from(jinja::Array a) {
    check_items(a.size());
    charge(1 + kItemWork * a.size());
    Value v;
    v.kind = Kind::Array;
    v.array = std::make_shared<jinja::Array>(std::move(a));
    return v;
  }
  static Value from(jinja::Object o) {
    charge(1 + kItemWork * o.size());
    Value v;
    v.kind = Kind::Object;
    v.object = std::make_shared<jinja::Object>(std::move(o));
    return v;
  }
  static Value from(jinja::Function f) {
    Value v;
    v.kind = Kind::Function;
    v.function = std::make_shared<jinja::Function>(std::move(f));
    return v;
  }
  static Value from_json(const nlohmann::ordered_json& j, int depth = 0);  // keys keep their order

  // A template may build values without printing them (a list doubled in a loop): every string and
  // list a template makes is bounded, so memory is too. Throw Error past the limits.
  // Strings also count against a budget for the whole render (a 16 MiB string appended to a list a
  // thousand times), reset by start_render().
  static constexpr size_t kMaxStringBytes = 16 << 20;
  static constexpr size_t kMaxRenderBytes = size_t{128} << 20;  // 16 times the largest request body
  static constexpr size_t kMaxItems = 100000;                   // a list is at most ~11 MB (a Value is 112 bytes)
  static void check_string(size_t bytes);                       // a string made: its size, and the render's budget
  static void check_string_size(size_t bytes);                  // a string about to be made: its size only
  static void check_items(size_t items);
  // Work is bounded too, so that no template runs for long (two nested loops over range(100000),
  // a macro calling itself twice at each level): loop iterations, calls, items built, compared or
  // printed, and string bytes scanned (per 64) each count against a budget for the whole render
  // (start_render's; ChatTemplate::kMaxWork by default). An item put in a list counts kItemWork
  // units, so the budget also bounds the items a render builds, whatever it keeps: 1M by default,
  // about 110 MB.
  static constexpr uint64_t kItemWork = 4;
  static void charge(uint64_t units);
  static void charge_scan(size_t bytes) { charge(1 + bytes / 64); }
  // Values nest at most this deep (a list that contains itself would nest forever).
  static constexpr int kMaxNesting = 256;
  static void start_render(uint64_t max_work);

  bool is(Kind k) const { return kind == k; }
  bool defined() const { return kind != Kind::Undefined; }
  bool is_number() const { return kind == Kind::Int || kind == Kind::Float; }
  double as_double() const { return kind == Kind::Int ? static_cast<double>(integer) : number; }
  bool truthy() const;
  std::string str() const;                // what {{ value }} prints (Python's str)
  std::string repr(int depth = 0) const;  // Python's repr, used inside lists and dicts
  std::string type_name() const;
  nlohmann::ordered_json to_json(int depth = 0) const;
  bool reaches(const Value& container, int depth = 0) const;  // whether `container` is this value or inside it
  const Value* get(const std::string& key) const;             // dict lookup; nullptr when absent
  void set(const std::string& key, Value v);                  // dict assignment
};

bool operator==(const Value& a, const Value& b);
bool equal(const Value& a, const Value& b, int depth);  // ==, counting the depth of nested values

// Python's json.dumps with ensure_ascii=False: ", " and ": " separators, or `indent` spaces per level.
std::string dump_json(const nlohmann::ordered_json& j, int indent);

// Positional and keyword arguments of a call, with typed access that names the function in errors.
struct Arguments {
  std::string function;
  std::vector<Value> positional;
  std::vector<std::pair<std::string, Value>> keywords;

  const Value* find(size_t position, const std::string& keyword) const;
  Value get(size_t position, const std::string& keyword, Value fallback = {}) const;
};

}  // namespace nanoserve::jinja
