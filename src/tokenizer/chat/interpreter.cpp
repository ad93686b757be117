// Evaluation of the syntax tree (ast.h): Python semantics where templates depend on them.
#include <algorithm>
#include <cmath>
#include <cstdint>

#include "tokenizer/chat/ast.h"
#include "tokenizer/chat/context.h"
#include "util/error.h"

namespace nanoserve::jinja {

namespace {

constexpr size_t kMaxOutputBytes = 16 << 20;  // a chat prompt is far smaller; this stops runaway loops
constexpr int kMaxDepth = 64;
// A loop iteration builds its `loop` object and a scope, a call a scope and its arguments: each
// counts as this many units of work (measured: about 100 ns a unit, so the budget is ~0.5 s).
constexpr uint64_t kIterationWork = 8;
constexpr uint64_t kCallWork = 4;

using K = Value::Kind;

Arguments evaluate(Context& ctx, const CallArgs& args, std::string function) {
  Arguments out{std::move(function), {}, {}};
  for (const auto& a : args.positional) out.positional.push_back(a->eval(ctx));
  for (const auto& [k, a] : args.keywords) out.keywords.emplace_back(k, a->eval(ctx));
  return out;
}

int64_t index_of(int64_t i, size_t size) { return i < 0 ? i + static_cast<int64_t>(size) : i; }

// Python's integer arithmetic on int64: floor division and modulo round toward minus infinity, and
// a result that does not fit is an error rather than undefined behaviour.
Value integer_arithmetic(const std::string& op, int64_t a, int64_t b, int line) {
  int64_t r = 0;
  bool overflow = false;
  if (op == "+") {
    overflow = __builtin_add_overflow(a, b, &r);
  } else if (op == "-") {
    overflow = __builtin_sub_overflow(a, b, &r);
  } else if (op == "*") {
    overflow = __builtin_mul_overflow(a, b, &r);
  } else if (op == "//") {
    overflow = a == INT64_MIN && b == -1;
    if (!overflow) r = a / b - (a % b != 0 && (a < 0) != (b < 0));
  } else if (op == "%") {
    r = b == -1 ? 0 : a % b;
    if (r != 0 && (r < 0) != (b < 0)) r += b;
  } else {  // ** with b >= 0, by squaring
    r = 1;
    for (int64_t base = a, e = b; e > 0 && !overflow; e >>= 1) {
      if (e & 1) overflow = __builtin_mul_overflow(r, base, &r);
      if (e > 1 && !overflow) overflow = __builtin_mul_overflow(base, base, &base);
    }
  }
  if (overflow) fail("chat template line {}: integer overflow in {} {} {}", line, a, op, b);
  return Value::from(r);
}

Value arithmetic(const std::string& op, const Value& a, const Value& b, int line) {
  // Sizes are checked before anything is built: a template that doubles a value in a loop stops at
  // the limit without first allocating past it.
  if (op == "+" && a.is(K::String) && b.is(K::String)) {
    Value::check_string_size(a.string.size() + b.string.size());
    return Value::from(a.string + b.string);
  }
  if (op == "+" && a.is(K::Array) && b.is(K::Array)) {
    Value::check_items(a.array->size() + b.array->size());
    Array joined = *a.array;
    joined.insert(joined.end(), b.array->begin(), b.array->end());
    return Value::from(std::move(joined));
  }
  if (op == "*" && a.is(K::String) && b.is(K::Int)) {
    if (b.integer > 0 && a.string.size() > Value::kMaxStringBytes / static_cast<uint64_t>(b.integer)) {
      fail("chat template line {}: a string repeated {} times exceeds {} bytes", line, b.integer,
           Value::kMaxStringBytes);
    }
    std::string out;
    for (int64_t i = 0; i < b.integer; ++i) out += a.string;
    return Value::from(std::move(out));
  }
  if (!a.is_number() || !b.is_number()) {
    fail("chat template line {}: unsupported operand types for {}: {} and {}", line, op, a.type_name(), b.type_name());
  }
  const bool ints = a.is(K::Int) && b.is(K::Int);
  const double x = a.as_double(), y = b.as_double();
  if ((op == "/" || op == "//" || op == "%") && y == 0) fail("chat template line {}: division by zero", line);
  if (ints && op != "/" && (op != "**" || b.integer >= 0)) return integer_arithmetic(op, a.integer, b.integer, line);
  if (op == "+") return Value::from(x + y);
  if (op == "-") return Value::from(x - y);
  if (op == "*") return Value::from(x * y);
  if (op == "/") return Value::from(x / y);
  if (op == "//") return Value::from(std::floor(x / y));
  if (op == "%") {  // the sign of the divisor, as Python's
    double r = std::fmod(x, y);
    if (r != 0 && (r < 0) != (y < 0)) r += y;
    return Value::from(r);
  }
  return Value::from(std::pow(x, y));  // **
}

bool less(const Value& a, const Value& b, int line) {
  if (a.is_number() && b.is_number()) return a.as_double() < b.as_double();
  if (a.is(K::String) && b.is(K::String)) return a.string < b.string;
  fail("chat template line {}: cannot compare {} with {}", line, a.type_name(), b.type_name());
}

bool contains(const Value& container, const Value& item, int line) {
  switch (container.kind) {
    case K::String:
      if (!item.is(K::String)) fail("chat template line {}: 'in <string>' needs a string on the left", line);
      Value::charge_scan(container.string.size());
      return container.string.find(item.string) != std::string::npos;
    case K::Array: return std::find(container.array->begin(), container.array->end(), item) != container.array->end();
    case K::Object: return item.is(K::String) && container.get(item.string);
    default: fail("chat template line {}: cannot test membership in {}", line, container.type_name());
  }
}

// Items a for loop walks: list elements, dict keys, string characters.
Array iterate(const Value& v, int line) {
  switch (v.kind) {
    case K::Array: return *v.array;
    case K::Object: {
      Array keys;
      for (const auto& [k, _] : *v.object) keys.push_back(Value::from(k));
      return keys;
    }
    case K::String: {
      Value::check_items(v.string.size());
      Array chars;
      for (char c : v.string) chars.push_back(Value::from(std::string(1, c)));
      return chars;
    }
    case K::Undefined:
    case K::None: return {};
    default: fail("chat template line {}: cannot iterate over {}", line, v.type_name());
  }
}

void run(const Body& body, Context& ctx) {
  for (const auto& s : body) {
    s->exec(ctx);
    if (ctx.flow != Context::Flow::Normal) return;
  }
}

}  // namespace

Context::Context(Value globals) {
  scopes_.emplace_back();
  const Value functions = global_functions();
  for (const auto& [k, v] : *functions.object) scopes_.back()[k] = v;
  if (globals.is(K::Object)) {
    for (const auto& [k, v] : *globals.object) scopes_.back()[k] = v;
  }
}

Value Context::lookup(const std::string& name) const {
  for (auto it = scopes_.rbegin(); it != scopes_.rend(); ++it) {
    auto found = it->find(name);
    if (found != it->end()) return found->second;
  }
  return {};
}

void Context::assign(const std::string& name, Value value) { scopes_.back()[name] = std::move(value); }

void Context::write(const std::string& text) {
  if (output_.size() + text.size() > kMaxOutputBytes) fail("chat template output exceeds {} bytes", kMaxOutputBytes);
  output_ += text;
}

void Context::enter(int line) {
  if (++depth_ > kMaxDepth) fail("chat template line {}: recursion deeper than {}", line, kMaxDepth);
}

Value Name::eval(Context& ctx) const { return ctx.lookup(name); }

Value ListExpr::eval(Context& ctx) const {
  Array out;
  for (const auto& e : items) out.push_back(e->eval(ctx));
  return Value::from(std::move(out));
}

Value DictExpr::eval(Context& ctx) const {
  Value out = Value::from(Object{});
  for (const auto& [k, v] : items) {
    Value key = k->eval(ctx);
    out.set(key.str(), v->eval(ctx));
  }
  return out;
}

Value Attribute::eval(Context& ctx) const {
  Value o = object->eval(ctx);
  if (const Value* v = o.get(name)) return *v;
  return {};  // missing attributes are undefined (`x.y is defined` is the idiom)
}

Value Subscript::eval(Context& ctx) const {
  Value o = object->eval(ctx), i = index->eval(ctx);
  if (o.is(K::Object)) {
    const Value* v = o.get(i.str());
    return v ? *v : Value{};
  }
  if ((o.is(K::Array) || o.is(K::String)) && i.is(K::Int)) {
    const size_t size = o.is(K::Array) ? o.array->size() : o.string.size();
    const int64_t at = index_of(i.integer, size);
    if (at < 0 || at >= static_cast<int64_t>(size)) return {};
    return o.is(K::Array) ? (*o.array)[static_cast<size_t>(at)]
                          : Value::from(std::string(1, o.string[static_cast<size_t>(at)]));
  }
  if (!o.defined()) return {};
  fail("chat template line {}: cannot index {} with {}", line, o.type_name(), i.type_name());
}

Value Slice::eval(Context& ctx) const {
  Value o = object->eval(ctx);
  if (!o.is(K::Array) && !o.is(K::String)) fail("chat template line {}: cannot slice {}", line, o.type_name());
  const auto size = static_cast<int64_t>(o.is(K::Array) ? o.array->size() : o.string.size());
  const int64_t st = step ? step->eval(ctx).integer : 1;
  if (st == 0) fail("chat template line {}: slice step cannot be zero", line);
  auto bound = [&](const ExprPtr& e, int64_t fallback) {
    if (!e) return fallback;
    const int64_t i = index_of(e->eval(ctx).integer, static_cast<size_t>(size));
    return std::clamp<int64_t>(i, st > 0 ? 0 : -1, st > 0 ? size : size - 1);
  };
  const int64_t from = bound(start, st > 0 ? 0 : size - 1), to = bound(stop, st > 0 ? size : -1);
  Array items;
  std::string chars;
  for (int64_t i = from; st > 0 ? i < to : i > to; i += st) {
    if (o.is(K::Array)) {
      items.push_back((*o.array)[static_cast<size_t>(i)]);
    } else {
      chars += o.string[static_cast<size_t>(i)];
    }
  }
  return o.is(K::Array) ? Value::from(std::move(items)) : Value::from(std::move(chars));
}

Value Call::eval(Context& ctx) const {
  if (const auto* attr = dynamic_cast<const Attribute*>(callee.get())) {
    Value object = attr->object->eval(ctx);
    if (has_method(object, attr->name)) {
      Arguments args = evaluate(ctx, this->args, attr->name);
      return call_method(object, attr->name, args, line);
    }
  }
  Value f = callee->eval(ctx);
  if (!f.is(K::Function))
    fail("chat template line {}: {} is not callable", line, f.defined() ? f.type_name() : "an undefined name");
  Arguments args = evaluate(ctx, this->args, "function");
  Value::charge(kCallWork);
  ctx.enter(line);
  Value result = (*f.function)(args);
  ctx.leave();
  return result;
}

Value Filter::eval(Context& ctx) const {
  Arguments a = evaluate(ctx, args, name);
  return call_filter(name, value->eval(ctx), a, line);
}

Value Test::eval(Context& ctx) const {
  Arguments a = evaluate(ctx, args, name);
  return Value::from(call_test(name, value->eval(ctx), a, line) != negated);
}

Value Unary::eval(Context& ctx) const {
  Value v = operand->eval(ctx);
  if (op == "not") return Value::from(!v.truthy());
  if (!v.is_number()) fail("chat template line {}: bad operand for unary {}: {}", line, op, v.type_name());
  if (op == "+") return v;
  return v.is(K::Int) ? Value::from(-v.integer) : Value::from(-v.number);
}

Value Binary::eval(Context& ctx) const {
  if (op == "and") {
    Value l = left->eval(ctx);
    return l.truthy() ? right->eval(ctx) : l;
  }
  if (op == "or") {
    Value l = left->eval(ctx);
    return l.truthy() ? l : right->eval(ctx);
  }
  Value l = left->eval(ctx), r = right->eval(ctx);
  if (op == "~") {
    std::string left = l.str(), right = r.str();
    Value::check_string_size(left.size() + right.size());
    return Value::from(left + right);
  }
  if (op == "==") return Value::from(l == r);
  if (op == "!=") return Value::from(!(l == r));
  if (op == "<") return Value::from(less(l, r, line));
  if (op == ">") return Value::from(less(r, l, line));
  if (op == "<=") return Value::from(!less(r, l, line));
  if (op == ">=") return Value::from(!less(l, r, line));
  if (op == "in") return Value::from(contains(r, l, line));
  if (op == "not in") return Value::from(!contains(r, l, line));
  return arithmetic(op, l, r, line);
}

Value Conditional::eval(Context& ctx) const {
  if (condition->eval(ctx).truthy()) return then->eval(ctx);
  return otherwise ? otherwise->eval(ctx) : Value{};
}

void TextStmt::exec(Context& ctx) const { ctx.write(text); }

void OutputStmt::exec(Context& ctx) const { ctx.write(value->eval(ctx).str()); }

void IfStmt::exec(Context& ctx) const {
  for (const auto& [condition, body] : branches) {
    if (condition->eval(ctx).truthy()) {
      run(body, ctx);
      return;
    }
  }
  run(otherwise, ctx);
}

void ForStmt::exec(Context& ctx) const {
  Array items = iterate(iterable->eval(ctx), line);
  Array kept;
  for (auto& item : items) {
    if (!filter) {
      kept.push_back(std::move(item));
      continue;
    }
    Value::charge(1);
    Context::Scope scope(ctx);
    ctx.assign(targets[0], item);
    if (filter->eval(ctx).truthy()) kept.push_back(std::move(item));
  }
  if (kept.empty()) {
    run(otherwise, ctx);
    return;
  }
  const auto n = static_cast<int64_t>(kept.size());
  for (int64_t i = 0; i < n; ++i) {
    Value::charge(kIterationWork);
    Context::Scope scope(ctx);
    const Value& item = kept[static_cast<size_t>(i)];
    if (targets.size() == 1) {
      ctx.assign(targets[0], item);
    } else {
      if (!item.is(K::Array) || item.array->size() != targets.size()) {
        fail("chat template line {}: cannot unpack {} into {} names", line, item.repr(), targets.size());
      }
      for (size_t t = 0; t < targets.size(); ++t) ctx.assign(targets[t], (*item.array)[t]);
    }
    Value loop = Value::from(Object{});
    loop.set("index", Value::from(i + 1));
    loop.set("index0", Value::from(i));
    loop.set("revindex", Value::from(n - i));
    loop.set("revindex0", Value::from(n - i - 1));
    loop.set("first", Value::from(i == 0));
    loop.set("last", Value::from(i == n - 1));
    loop.set("length", Value::from(n));
    loop.set("previtem", i > 0 ? kept[static_cast<size_t>(i - 1)] : Value{});
    loop.set("nextitem", i + 1 < n ? kept[static_cast<size_t>(i + 1)] : Value{});
    ctx.assign("loop", loop);
    run(body, ctx);
    if (ctx.flow == Context::Flow::Break) {
      ctx.flow = Context::Flow::Normal;
      break;
    }
    ctx.flow = Context::Flow::Normal;
  }
}

void SetStmt::exec(Context& ctx) const {
  Value v;
  if (value) {
    v = value->eval(ctx);
  } else {  // {% set x %}...{% endset %} captures the rendered body
    std::string saved = std::move(ctx.output());
    ctx.output().clear();
    run(body, ctx);
    v = Value::from(std::move(ctx.output()));
    ctx.output() = std::move(saved);
  }
  if (!attribute.empty()) {
    Value target = ctx.lookup(targets[0]);
    if (!target.is(K::Object))
      fail("chat template line {}: cannot set attribute '{}' of {}", line, attribute, target.type_name());
    if (v.reaches(target))
      fail("chat template line {}: cannot set '{}.{}' to a value that contains {}", line, targets[0], attribute,
           targets[0]);
    target.set(attribute, std::move(v));  // objects are shared: this updates the namespace in place
  } else if (targets.size() == 1) {
    ctx.assign(targets[0], std::move(v));
  } else {
    if (!v.is(K::Array) || v.array->size() != targets.size())
      fail("chat template line {}: cannot unpack into {} names", line, targets.size());
    for (size_t t = 0; t < targets.size(); ++t) ctx.assign(targets[t], (*v.array)[t]);
  }
}

void MacroStmt::exec(Context& ctx) const {
  // The macro sees the variables of the render (looked up when called), its parameters and `caller`-free body.
  auto body_ref = body;
  const MacroStmt* self = this;
  Context* context = &ctx;
  ctx.assign(name, Value::from(Function([self, body_ref, context](Arguments& args) {
               Context::Scope scope(*context);
               for (size_t i = 0; i < self->params.size(); ++i) {
                 const auto& [param, fallback] = self->params[i];
                 const Value* given = args.find(i, param);
                 context->assign(param, given ? *given : fallback ? fallback->eval(*context) : Value{});
               }
               std::string saved = std::move(context->output());
               context->output().clear();
               run(*body_ref, *context);
               context->flow = Context::Flow::Normal;
               Value result = Value::from(std::move(context->output()));
               context->output() = std::move(saved);
               return result;
             })));
}

void LoopControl::exec(Context& ctx) const { ctx.flow = is_break ? Context::Flow::Break : Context::Flow::Continue; }

void BlockStmt::exec(Context& ctx) const { run(body, ctx); }

}  // namespace nanoserve::jinja
