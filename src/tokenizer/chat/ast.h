// The syntax tree of a chat template: expressions evaluate to Values, statements append to the
// output. Built by parser.cpp, run by interpreter.cpp.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "tokenizer/chat/value.h"

namespace nanoserve::jinja {

class Context;

struct Expr {
  int line = 0;
  virtual ~Expr() = default;
  virtual Value eval(Context& ctx) const = 0;
};
using ExprPtr = std::unique_ptr<Expr>;

struct Stmt {
  int line = 0;
  virtual ~Stmt() = default;
  virtual void exec(Context& ctx) const = 0;
};
using StmtPtr = std::unique_ptr<Stmt>;
using Body = std::vector<StmtPtr>;

struct CallArgs {
  std::vector<ExprPtr> positional;
  std::vector<std::pair<std::string, ExprPtr>> keywords;
};

struct Literal : Expr {
  Value value;
  Value eval(Context&) const override { return value; }
};
struct Name : Expr {
  std::string name;
  Value eval(Context& ctx) const override;
};
struct ListExpr : Expr {
  std::vector<ExprPtr> items;
  Value eval(Context& ctx) const override;
};
struct DictExpr : Expr {
  std::vector<std::pair<ExprPtr, ExprPtr>> items;
  Value eval(Context& ctx) const override;
};
struct Attribute : Expr {
  ExprPtr object;
  std::string name;
  Value eval(Context& ctx) const override;
};
struct Subscript : Expr {
  ExprPtr object, index;
  Value eval(Context& ctx) const override;
};
struct Slice : Expr {
  ExprPtr object, start, stop, step;  // each may be null
  Value eval(Context& ctx) const override;
};
struct Call : Expr {
  ExprPtr callee;  // an Attribute callee on a string, list or dict is a method call
  CallArgs args;
  Value eval(Context& ctx) const override;
};
struct Filter : Expr {
  ExprPtr value;
  std::string name;
  CallArgs args;
  Value eval(Context& ctx) const override;
};
struct Test : Expr {
  ExprPtr value;
  std::string name;
  CallArgs args;
  bool negated = false;
  Value eval(Context& ctx) const override;
};
struct Unary : Expr {
  std::string op;  // "not", "-", "+"
  ExprPtr operand;
  Value eval(Context& ctx) const override;
};
struct Binary : Expr {
  std::string op;  // and or + - * / // % ** ~ == != < > <= >= in "not in"
  ExprPtr left, right;
  Value eval(Context& ctx) const override;
};
struct Conditional : Expr {
  ExprPtr condition, then, otherwise;  // otherwise may be null (undefined)
  Value eval(Context& ctx) const override;
};

struct TextStmt : Stmt {
  std::string text;
  void exec(Context& ctx) const override;
};
struct OutputStmt : Stmt {
  ExprPtr value;
  void exec(Context& ctx) const override;
};
struct IfStmt : Stmt {
  std::vector<std::pair<ExprPtr, Body>> branches;
  Body otherwise;
  void exec(Context& ctx) const override;
};
struct ForStmt : Stmt {
  std::vector<std::string> targets;  // one name, or several to unpack
  ExprPtr iterable, filter;          // filter may be null ({% for x in xs if cond %})
  Body body, otherwise;
  void exec(Context& ctx) const override;
};
struct SetStmt : Stmt {
  std::vector<std::string> targets;  // `a`, or `a, b` to unpack
  std::string attribute;             // `ns.attr = ...`: targets[0] is the object
  ExprPtr value;                     // null for a {% set x %}...{% endset %} block
  Body body;
  void exec(Context& ctx) const override;
};
struct MacroStmt : Stmt {
  std::string name;
  std::vector<std::pair<std::string, ExprPtr>> params;  // default may be null
  std::shared_ptr<Body> body;
  void exec(Context& ctx) const override;
};
struct LoopControl : Stmt {
  bool is_break;
  void exec(Context& ctx) const override;
};
struct BlockStmt : Stmt {  // {% generation %} and similar wrappers render their body unchanged
  Body body;
  void exec(Context& ctx) const override;
};

}  // namespace nanoserve::jinja
