// The state of one render: variable scopes, the output, loop control and resource limits.
#pragma once

#include <string>
#include <unordered_map>
#include <vector>

#include "tokenizer/chat/value.h"

namespace nanoserve::jinja {

class Context {
 public:
  explicit Context(Value globals);

  Value lookup(const std::string& name) const;
  void assign(const std::string& name, Value value);  // in the innermost scope

  // A new scope for the lifetime of the object (for-loop bodies, macro calls).
  class Scope {
   public:
    explicit Scope(Context& ctx) : ctx_(ctx) { ctx_.scopes_.emplace_back(); }
    ~Scope() { ctx_.scopes_.pop_back(); }
    Scope(const Scope&) = delete;
    Scope& operator=(const Scope&) = delete;

   private:
    Context& ctx_;
  };

  void write(const std::string& text);  // throws Error past the output limit
  std::string& output() { return output_; }

  enum class Flow { Normal, Break, Continue };
  Flow flow = Flow::Normal;

  // Guards recursion (macros calling macros): throws Error past the limit.
  void enter(int line);
  void leave() { --depth_; }

 private:
  std::vector<std::unordered_map<std::string, Value>> scopes_;
  std::string output_;
  int depth_ = 0;
};

// Builtins, in builtins.cpp.
Value call_filter(const std::string& name, Value value, Arguments& args, int line);
bool call_test(const std::string& name, const Value& value, Arguments& args, int line);
Value call_method(Value& object, const std::string& name, Arguments& args,
                  int line);  // nullopt-like: Undefined if none
bool has_method(const Value& object, const std::string& name);
Value global_functions();  // raise_exception, namespace, range, strftime_now, ...

}  // namespace nanoserve::jinja
