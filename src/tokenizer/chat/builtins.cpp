// Filters, tests, methods and global functions that real chat templates use.
#include <algorithm>
#include <cctype>
#include <chrono>
#include <ctime>

#include "tokenizer/chat/context.h"
#include "util/error.h"

namespace nanoserve::jinja {

namespace {

using K = Value::Kind;

std::string strip(const std::string& s, const std::string& chars, bool left, bool right) {
  size_t begin = 0, end = s.size();
  if (left) begin = s.find_first_not_of(chars);
  if (begin == std::string::npos) return "";
  if (right) end = s.find_last_not_of(chars) + 1;
  return s.substr(begin, end - begin);
}

std::string lower(std::string s) {
  for (auto& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return s;
}
std::string upper(std::string s) {
  for (auto& c : s) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  return s;
}
std::string capitalize(const std::string& s) {
  std::string out = lower(s);
  if (!out.empty()) out[0] = static_cast<char>(std::toupper(static_cast<unsigned char>(out[0])));
  return out;
}
std::string title(const std::string& s) {
  std::string out = s;
  bool start = true;
  for (auto& c : out) {
    const auto u = static_cast<unsigned char>(c);
    c = static_cast<char>(start ? std::toupper(u) : std::tolower(u));
    start = !std::isalpha(u);
  }
  return out;
}
std::string replace_all(std::string s, const std::string& from, const std::string& to, int64_t count = -1) {
  if (from.empty()) return s;
  size_t pos = 0;
  for (int64_t n = 0; (count < 0 || n < count) && (pos = s.find(from, pos)) != std::string::npos; ++n) {
    s.replace(pos, from.size(), to);
    pos += to.size();
  }
  return s;
}

std::string expect_string(const Value& v, const std::string& what, int line) {
  if (!v.is(K::String)) fail("chat template line {}: {} needs a string, got {}", line, what, v.type_name());
  return v.string;
}

Value length(const Value& v, int line) {
  switch (v.kind) {
    case K::String: return Value::from(static_cast<int64_t>(v.string.size()));
    case K::Array: return Value::from(static_cast<int64_t>(v.array->size()));
    case K::Object: return Value::from(static_cast<int64_t>(v.object->size()));
    default: fail("chat template line {}: {} has no length", line, v.type_name());
  }
}

Value items(const Value& v) {
  Array out;
  if (v.is(K::Object)) {
    for (const auto& [k, x] : *v.object) out.push_back(Value::from(Array{Value::from(k), x}));
  }
  return Value::from(std::move(out));
}

// An indentation width: real templates use a few spaces; a huge one would allocate a pad per line.
constexpr int64_t kMaxIndent = 256;
int indent_width(const Value& width, int64_t fallback, int line) {
  const int64_t w = width.is(K::Int) ? width.integer : fallback;
  if (w > kMaxIndent)
    fail("chat template line {}: an indent of {} spaces is over the limit of {}", line, w, kMaxIndent);
  return static_cast<int>(std::max<int64_t>(0, w));
}

std::string to_json(const Value& v, Arguments& args, int line) {
  return dump_json(v.to_json(), indent_width(args.get(0, "indent"), 0, line));
}

Array as_list(const Value& v, int line) {
  if (v.is(K::Array)) return *v.array;
  if (v.is(K::String)) {
    Value::check_items(v.string.size());
    Array out;
    for (char c : v.string) out.push_back(Value::from(std::string(1, c)));
    return out;
  }
  if (v.is(K::Object)) return *items(v).array;
  fail("chat template line {}: cannot make a list of {}", line, v.type_name());
}

// selectattr / rejectattr: items whose attribute passes the test (truthiness without one).
Value select_attr(const Value& v, Arguments& args, bool keep, int line) {
  const std::string attr = expect_string(args.get(0, "attribute"), "selectattr", line);
  Array out;
  for (const auto& item : as_list(v, line)) {
    const Value* a = item.get(attr);
    Value x = a ? *a : Value{};
    bool pass;
    if (args.positional.size() > 1) {
      Arguments rest{args.function, {args.positional.begin() + 2, args.positional.end()}, {}};
      pass = call_test(args.positional[1].str(), x, rest, line);
    } else {
      pass = x.truthy();
    }
    if (pass == keep) out.push_back(item);
  }
  return Value::from(std::move(out));
}

// A filter or method walks its input once (a string scanned, a list's items copied): the render
// pays for that up front.
void charge_input(const Value& v) {
  if (v.is(K::String)) return Value::charge_scan(v.string.size());
  Value::charge(1 + (v.is(K::Array) ? v.array->size() : v.is(K::Object) ? v.object->size() : 0));
}

}  // namespace

Value call_filter(const std::string& name, Value v, Arguments& args, int line) {
  charge_input(v);
  if (name == "trim")
    return Value::from(strip(v.str(), args.positional.empty() ? " \t\n\r\f\v" : args.positional[0].str(), true, true));
  if (name == "upper") return Value::from(upper(v.str()));
  if (name == "lower") return Value::from(lower(v.str()));
  if (name == "capitalize") return Value::from(capitalize(v.str()));
  if (name == "title") return Value::from(title(v.str()));
  if (name == "length" || name == "count") return length(v, line);
  if (name == "string") return Value::from(v.str());
  if (name == "safe" || name == "e" || name == "escape") return v;  // chat templates render plain text
  if (name == "tojson") return Value::from(to_json(v, args, line));
  if (name == "items") return items(v);
  if (name == "list") return Value::from(as_list(v, line));
  if (name == "first" || name == "last") {
    Array a = as_list(v, line);
    if (a.empty()) return {};
    return name == "first" ? a.front() : a.back();
  }
  if (name == "reverse") {
    if (v.is(K::String)) return Value::from(std::string(v.string.rbegin(), v.string.rend()));
    Array a = as_list(v, line);
    std::reverse(a.begin(), a.end());
    return Value::from(std::move(a));
  }
  if (name == "join") {
    const std::string sep = args.get(0, "d", Value::from(std::string())).str();
    const Value attribute = args.get(1, "attribute");
    std::string out;
    bool first = true;
    for (const auto& x : as_list(v, line)) {
      const Value* a = attribute.defined() ? x.get(attribute.str()) : &x;
      out += (first ? "" : sep) + (a ? a->str() : "");
      first = false;
    }
    return Value::from(std::move(out));
  }
  if (name == "default" || name == "d") {
    const bool boolean = args.get(1, "boolean", Value::from(false)).truthy();
    if (!v.defined() || (boolean && !v.truthy())) return args.get(0, "default_value", Value::from(std::string()));
    return v;
  }
  if (name == "replace") {
    return Value::from(replace_all(v.str(), args.get(0, "old").str(), args.get(1, "new").str(),
                                   args.get(2, "count", Value::from(int64_t{-1})).integer));
  }
  if (name == "int") {
    if (v.is(K::Int)) return v;
    if (v.is(K::Float)) return Value::from(static_cast<int64_t>(v.number));
    try {
      return Value::from(static_cast<int64_t>(std::stoll(v.str())));
    } catch (const std::exception&) {
      return args.get(0, "default", Value::from(int64_t{0}));
    }
  }
  if (name == "float") return Value::from(v.is_number() ? v.as_double() : std::stod(v.str()));
  if (name == "abs") return v.is(K::Int) ? Value::from(std::abs(v.integer)) : Value::from(std::abs(v.as_double()));
  if (name == "selectattr") return select_attr(v, args, true, line);
  if (name == "rejectattr") return select_attr(v, args, false, line);
  if (name == "map") {
    Array out;
    const Value attribute = args.get(99, "attribute");
    for (const auto& x : as_list(v, line)) {
      if (attribute.defined()) {
        const Value* a = x.get(attribute.str());
        out.push_back(a ? *a : args.get(99, "default"));
      } else {
        Arguments rest{
            args.function, {args.positional.begin() + (args.positional.empty() ? 0 : 1), args.positional.end()}, {}};
        out.push_back(call_filter(args.positional.empty() ? "" : args.positional[0].str(), x, rest, line));
      }
    }
    return Value::from(std::move(out));
  }
  if (name == "unique") {
    Array out;
    for (const auto& x : as_list(v, line)) {
      if (std::find(out.begin(), out.end(), x) == out.end()) out.push_back(x);
    }
    return Value::from(std::move(out));
  }
  if (name == "indent") {
    const int width = indent_width(args.get(0, "width", Value::from(int64_t{4})), 4, line);
    const bool first = args.get(1, "first", Value::from(false)).truthy();
    const std::string pad(static_cast<size_t>(width), ' ');
    std::string out = (first ? pad : "") + replace_all(v.str(), "\n", "\n" + pad);
    return Value::from(std::move(out));
  }
  fail("chat template line {}: unknown filter '{}'", line, name);
}

bool call_test(const std::string& name, const Value& v, Arguments& args, int line) {
  if (name == "defined") return v.defined();
  if (name == "undefined") return !v.defined();
  if (name == "none") return v.is(K::None);
  if (name == "true") return v.is(K::Bool) && v.boolean;
  if (name == "false") return v.is(K::Bool) && !v.boolean;
  if (name == "boolean") return v.is(K::Bool);
  if (name == "string") return v.is(K::String);
  if (name == "number") return v.is_number();
  if (name == "integer") return v.is(K::Int);
  if (name == "float") return v.is(K::Float);
  if (name == "mapping") return v.is(K::Object);
  if (name == "sequence" || name == "iterable") return v.is(K::Array) || v.is(K::String) || v.is(K::Object);
  if (name == "callable") return v.is(K::Function);
  if (name == "lower") return v.is(K::String) && v.string == lower(v.string);
  if (name == "upper") return v.is(K::String) && v.string == upper(v.string);
  const Value other = args.get(0, "value");
  if (name == "eq" || name == "equalto" || name == "==") return v == other;
  if (name == "ne" || name == "!=") return !(v == other);
  if (name == "in")
    return other.is(K::Array) ? std::find(other.array->begin(), other.array->end(), v) != other.array->end()
                              : other.is(K::String) && other.string.find(v.str()) != std::string::npos;
  if (name == "odd" || name == "even") return v.is(K::Int) && (v.integer % 2 != 0) == (name == "odd");
  if (name == "divisibleby")
    return v.is(K::Int) && other.is(K::Int) && other.integer != 0 && v.integer % other.integer == 0;
  fail("chat template line {}: unknown test '{}'", line, name);
}

bool has_method(const Value& o, const std::string& name) {
  static const char* string_methods[] = {"strip",    "lstrip", "rstrip", "split", "startswith",
                                         "endswith", "upper",  "lower",  "title", "capitalize",
                                         "replace",  "join",   "find",   "count", "splitlines"};
  static const char* dict_methods[] = {"items", "keys", "values", "get"};
  auto in = [&](const auto& list) { return std::find(std::begin(list), std::end(list), name) != std::end(list); };
  if (o.is(K::String)) return in(string_methods);
  if (o.is(K::Object)) return in(dict_methods) && !o.get(name);
  if (o.is(K::Array)) return name == "append" || name == "pop" || name == "index";
  return false;
}

Value call_method(Value& o, const std::string& name, Arguments& args, int line) {
  charge_input(o);
  if (o.is(K::String)) {
    const std::string& s = o.string;
    const std::string chars = args.positional.empty() ? " \t\n\r\f\v" : args.positional[0].str();
    if (name == "strip") return Value::from(strip(s, chars, true, true));
    if (name == "lstrip") return Value::from(strip(s, chars, true, false));
    if (name == "rstrip") return Value::from(strip(s, chars, false, true));
    if (name == "upper") return Value::from(upper(s));
    if (name == "lower") return Value::from(lower(s));
    if (name == "title") return Value::from(title(s));
    if (name == "capitalize") return Value::from(capitalize(s));
    if (name == "startswith") return Value::from(s.rfind(args.get(0, "prefix").str(), 0) == 0);
    if (name == "endswith") {
      const std::string suffix = args.get(0, "suffix").str();
      return Value::from(s.size() >= suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0);
    }
    if (name == "replace") return Value::from(replace_all(s, args.get(0, "old").str(), args.get(1, "new").str()));
    if (name == "find") return Value::from(static_cast<int64_t>(s.find(args.get(0, "sub").str())));
    if (name == "count") {
      int64_t n = 0;
      const std::string sub = args.get(0, "sub").str();
      for (size_t p = s.find(sub); !sub.empty() && p != std::string::npos; p = s.find(sub, p + sub.size())) ++n;
      return Value::from(n);
    }
    if (name == "join") {
      std::string out;
      bool first = true;
      for (const auto& x : as_list(args.get(0, "iterable"), line)) {
        out += (first ? "" : s) + x.str();
        first = false;
      }
      return Value::from(std::move(out));
    }
    Array parts;
    if (name == "splitlines") {
      for (size_t start = 0; start < s.size();) {
        const size_t end = s.find('\n', start);
        Value::check_items(parts.size() + 1);
        parts.push_back(Value::from(s.substr(start, end == std::string::npos ? std::string::npos : end - start)));
        start = end == std::string::npos ? s.size() : end + 1;
      }
      return Value::from(std::move(parts));
    }
    // split(sep=None, maxsplit=-1)
    const Value sep = args.get(0, "sep");
    int64_t maxsplit = args.get(1, "maxsplit", Value::from(int64_t{-1})).integer;
    if (!sep.defined() || sep.is(K::None)) {
      size_t i = 0;
      while (i < s.size()) {
        i = s.find_first_not_of(" \t\n\r\f\v", i);
        if (i == std::string::npos) break;
        if (maxsplit-- == 0) {
          parts.push_back(Value::from(strip(s.substr(i), " \t\n\r\f\v", false, true)));
          break;
        }
        const size_t end = s.find_first_of(" \t\n\r\f\v", i);
        Value::check_items(parts.size() + 1);
        parts.push_back(Value::from(s.substr(i, end == std::string::npos ? std::string::npos : end - i)));
        i = end == std::string::npos ? s.size() : end;
      }
    } else {
      const std::string d = sep.str();
      if (d.empty()) fail("chat template line {}: split with an empty separator", line);
      size_t start = 0;
      for (size_t p; maxsplit-- != 0 && (p = s.find(d, start)) != std::string::npos; start = p + d.size()) {
        Value::check_items(parts.size() + 1);
        parts.push_back(Value::from(s.substr(start, p - start)));
      }
      parts.push_back(Value::from(s.substr(start)));
    }
    return Value::from(std::move(parts));
  }
  if (o.is(K::Object)) {
    if (name == "items") return items(o);
    Array out;
    if (name == "keys" || name == "values") {
      for (const auto& [k, x] : *o.object) out.push_back(name == "keys" ? Value::from(k) : x);
      return Value::from(std::move(out));
    }
    const Value* v = o.get(args.get(0, "key").str());  // get
    return v ? *v : args.get(1, "default", Value::none());
  }
  if (name == "append") {
    Value::check_items(o.array->size() + 1);
    Value item = args.get(0, "object");
    if (item.reaches(o)) fail("chat template line {}: cannot append a list to itself", line);
    Value::check_string(item.string.size());  // the copy counts against the render's budget
    o.array->push_back(std::move(item));
    return Value::none();
  }
  if (name == "index") {
    auto it = std::find(o.array->begin(), o.array->end(), args.get(0, "value"));
    if (it == o.array->end()) fail("chat template line {}: value not in list", line);
    return Value::from(static_cast<int64_t>(it - o.array->begin()));
  }
  if (o.array->empty()) fail("chat template line {}: pop from an empty list", line);  // pop
  Value last = o.array->back();
  o.array->pop_back();
  return last;
}

Value global_functions() {
  Value g = Value::from(Object{});
  g.set("raise_exception", Value::from(Function([](Arguments& args) -> Value {
          fail("chat template raised an error: {}", args.get(0, "message").str());
        })));
  g.set("namespace", Value::from(Function([](Arguments& args) {
          Value ns = Value::from(Object{});
          for (const auto& [k, v] : args.keywords) ns.set(k, v);
          return ns;
        })));
  g.set("dict", Value::from(Function([](Arguments& args) {
          Value d = Value::from(Object{});
          for (const auto& [k, v] : args.keywords) d.set(k, v);
          return d;
        })));
  g.set("range", Value::from(Function([](Arguments& args) {
          const auto& p = args.positional;
          if (p.empty() || p.size() > 3) fail("range() takes 1 to 3 arguments");
          int64_t start = p.size() > 1 ? p[0].integer : 0, stop = p.size() > 1 ? p[1].integer : p[0].integer;
          const int64_t step = p.size() > 2 ? p[2].integer : 1;
          if (step == 0) fail("range() step must not be zero");
          // The count first, without overflow: no list past the limit is built, and i never wraps.
          int64_t span = 0;
          if (__builtin_sub_overflow(stop, start, &span) || (span == INT64_MIN && step == -1)) {
            fail("range() of more than {} items", Value::kMaxItems);
          }
          const int64_t count = std::max<int64_t>(0, span / step + (span % step != 0));
          Value::check_items(static_cast<size_t>(count));
          Array out;
          for (int64_t k = 0; k < count; ++k) out.push_back(Value::from(start + k * step));
          return Value::from(std::move(out));
        })));
  g.set("strftime_now", Value::from(Function([](Arguments& args) {
          const std::time_t now = std::chrono::system_clock::to_time_t(std::chrono::system_clock::now());
          std::tm tm{};
          localtime_r(&now, &tm);
          char buffer[256];
          const size_t n = std::strftime(buffer, sizeof buffer, args.get(0, "format").str().c_str(), &tm);
          return Value::from(std::string(buffer, n));
        })));
  return g;
}

}  // namespace nanoserve::jinja
