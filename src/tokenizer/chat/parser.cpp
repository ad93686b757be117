#include "tokenizer/chat/parser.h"

#include <charconv>
#include <initializer_list>

#include "tokenizer/chat/lexer.h"
#include "util/error.h"

namespace nanoserve::jinja {

namespace {

using T = Token::Type;

class Parser {
 public:
  explicit Parser(std::vector<Token> tokens) : tokens_(std::move(tokens)) {}

  // Blocks inside blocks and expressions inside expressions recurse: real templates nest a few
  // levels, and a hostile one must get an error, not a stack overflow.
  static constexpr int kMaxNesting = 100;
  class Nesting {
   public:
    explicit Nesting(Parser& p) : parser_(p) {
      if (++parser_.nesting_ > kMaxNesting) {
        fail("chat template line {}: nested deeper than {} levels", parser_.peek().line, kMaxNesting);
      }
    }
    ~Nesting() { --parser_.nesting_; }
    Nesting(const Nesting&) = delete;
    Nesting& operator=(const Nesting&) = delete;

   private:
    Parser& parser_;
  };

  // Statements until one of the `ends` block keywords (left unconsumed) or the end of input.
  Body parse_body(std::initializer_list<const char*> ends) {
    const Nesting nesting(*this);
    Body body;
    while (true) {
      const Token& t = peek();
      if (t.type == T::End) {
        if (ends.size()) fail("chat template line {}: missing {{% {} %}}", t.line, *(ends.end() - 1));
        return body;
      }
      if (t.type == T::Text) {
        auto s = std::make_unique<TextStmt>();
        s->line = t.line;
        s->text = next().text;
        body.push_back(std::move(s));
      } else if (t.type == T::ExprBegin) {
        next();
        auto s = std::make_unique<OutputStmt>();
        s->line = t.line;
        s->value = expression();
        expect(T::ExprEnd, "}}");
        body.push_back(std::move(s));
      } else {
        const Token& keyword = tokens_[pos_ + 1];
        for (const char* end : ends) {
          if (keyword.type == T::Name && keyword.text == end) return body;
        }
        next();
        body.push_back(statement());
      }
    }
  }

 private:
  const Token& peek(size_t ahead = 0) const { return tokens_[std::min(pos_ + ahead, tokens_.size() - 1)]; }
  const Token& next() { return tokens_[std::min(pos_++, tokens_.size() - 1)]; }
  bool at(T type, const std::string& text = "") const {
    return peek().type == type && (text.empty() || peek().text == text);
  }
  bool at_name(const std::string& name) const { return at(T::Name, name); }
  bool accept(T type, const std::string& text) {
    if (!at(type, text)) return false;
    ++pos_;
    return true;
  }
  // The numeric literal at the current token; one that does not fit is an error, not a throw from
  // the standard library.
  template <typename T>
  T number(const char* kind) {
    const std::string& text = peek().text;
    T value{};
    const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
    if (ec != std::errc() || end != text.data() + text.size()) error(std::string(kind) + " literal out of range");
    next();
    return value;
  }

  [[noreturn]] void error(const std::string& what) const {
    fail("chat template line {}: {} (at '{}')", peek().line, what, peek().text);
  }
  const Token& expect(T type, const std::string& what) {
    if (peek().type != type || (type == T::Op && peek().text != what) ||
        (type == T::Name && !what.empty() && peek().text != what)) {
      error("expected " + what);
    }
    return next();
  }
  std::string name() { return expect(T::Name, "").text; }
  void end_tag() { expect(T::StmtEnd, "%}"); }
  // {% keyword %} closing a block, e.g. endif.
  void close(const char* keyword) {
    expect(T::StmtBegin, "{%");
    expect(T::Name, keyword);
    end_tag();
  }

  template <typename N>
  std::unique_ptr<N> node() {
    auto n = std::make_unique<N>();
    n->line = peek().line;
    return n;
  }

  StmtPtr statement() {
    const std::string keyword = name();
    if (keyword == "if") return if_statement();
    if (keyword == "for") return for_statement();
    if (keyword == "set") return set_statement();
    if (keyword == "macro") return macro_statement();
    if (keyword == "break" || keyword == "continue") {
      auto s = node<LoopControl>();
      s->is_break = keyword == "break";
      end_tag();
      return s;
    }
    if (keyword == "generation") {
      auto s = node<BlockStmt>();
      end_tag();
      s->body = parse_body({"endgeneration"});
      close("endgeneration");
      return s;
    }
    fail("chat template line {}: unsupported statement '{}'", peek().line, keyword);
  }

  StmtPtr if_statement() {
    auto s = node<IfStmt>();
    ExprPtr condition = expression();
    end_tag();
    while (true) {
      Body body = parse_body({"elif", "else", "endif"});
      s->branches.emplace_back(std::move(condition), std::move(body));
      expect(T::StmtBegin, "{%");
      const std::string keyword = name();
      if (keyword == "elif") {
        condition = expression();
        end_tag();
        continue;
      }
      end_tag();
      if (keyword == "else") {
        s->otherwise = parse_body({"endif"});
        close("endif");
      }
      return s;
    }
  }

  StmtPtr for_statement() {
    auto s = node<ForStmt>();
    do {
      s->targets.push_back(name());
    } while (accept(T::Op, ","));
    expect(T::Name, "in");
    s->iterable = ternary_free_or();
    if (accept(T::Name, "if")) s->filter = expression();
    end_tag();
    s->body = parse_body({"else", "endfor"});
    expect(T::StmtBegin, "{%");
    if (name() == "else") {
      end_tag();
      s->otherwise = parse_body({"endfor"});
      close("endfor");
    } else {
      end_tag();
    }
    return s;
  }

  StmtPtr set_statement() {
    auto s = node<SetStmt>();
    s->targets.push_back(name());
    if (accept(T::Op, ".")) {
      s->attribute = name();
    } else {
      while (accept(T::Op, ",")) s->targets.push_back(name());
    }
    if (accept(T::Op, "=")) {
      s->value = expression();
      end_tag();
    } else {
      end_tag();
      s->body = parse_body({"endset"});
      close("endset");
    }
    return s;
  }

  StmtPtr macro_statement() {
    auto s = node<MacroStmt>();
    s->name = name();
    expect(T::Op, "(");
    while (!accept(T::Op, ")")) {
      std::string param = name();
      ExprPtr fallback;
      if (accept(T::Op, "=")) fallback = expression();
      s->params.emplace_back(std::move(param), std::move(fallback));
      if (!at(T::Op, ")")) expect(T::Op, ",");
    }
    end_tag();
    s->body = std::make_shared<Body>(parse_body({"endmacro"}));
    close("endmacro");
    return s;
  }

  // expression: or_expr ['if' or_expr ['else' expression]]
  ExprPtr expression() {
    const Nesting nesting(*this);
    ExprPtr value = ternary_free_or();
    if (!at_name("if")) return value;
    auto c = node<Conditional>();
    next();
    c->then = std::move(value);
    c->condition = ternary_free_or();
    if (accept(T::Name, "else")) c->otherwise = expression();
    return c;
  }

  ExprPtr binary(ExprPtr left, std::string op, ExprPtr right) {
    auto b = node<Binary>();
    b->op = std::move(op);
    b->left = std::move(left);
    b->right = std::move(right);
    return b;
  }

  ExprPtr ternary_free_or() {
    ExprPtr left = and_expr();
    while (accept(T::Name, "or")) left = binary(std::move(left), "or", and_expr());
    return left;
  }
  ExprPtr and_expr() {
    ExprPtr left = not_expr();
    while (accept(T::Name, "and")) left = binary(std::move(left), "and", not_expr());
    return left;
  }
  ExprPtr not_expr() {
    if (!at_name("not")) return comparison();
    auto u = node<Unary>();
    next();
    u->op = "not";
    u->operand = not_expr();
    return u;
  }
  ExprPtr comparison() {
    ExprPtr left = concat();
    while (true) {
      if (at(T::Op) && (peek().text == "==" || peek().text == "!=" || peek().text == "<" || peek().text == ">" ||
                        peek().text == "<=" || peek().text == ">=")) {
        std::string op = next().text;
        left = binary(std::move(left), op, concat());
      } else if (accept(T::Name, "in")) {
        left = binary(std::move(left), "in", concat());
      } else if (at_name("not") && peek(1).type == T::Name && peek(1).text == "in") {
        pos_ += 2;
        left = binary(std::move(left), "not in", concat());
      } else {
        return left;
      }
    }
  }
  ExprPtr concat() {
    ExprPtr left = additive();
    while (accept(T::Op, "~")) left = binary(std::move(left), "~", additive());
    return left;
  }
  ExprPtr additive() {
    ExprPtr left = multiplicative();
    while (at(T::Op, "+") || at(T::Op, "-")) {
      std::string op = next().text;
      left = binary(std::move(left), op, multiplicative());
    }
    return left;
  }
  ExprPtr multiplicative() {
    ExprPtr left = power();
    while (at(T::Op, "*") || at(T::Op, "/") || at(T::Op, "//") || at(T::Op, "%")) {
      std::string op = next().text;
      left = binary(std::move(left), op, power());
    }
    return left;
  }
  ExprPtr power() {
    ExprPtr left = unary();
    while (accept(T::Op, "**")) left = binary(std::move(left), "**", unary());
    return left;
  }
  ExprPtr unary() {
    if (at(T::Op, "-") || at(T::Op, "+")) {
      auto u = node<Unary>();
      u->op = next().text;
      u->operand = unary();
      return u;
    }
    return filtered(postfix(primary()));
  }

  // value | filter(args) ... is [not] test(args)
  ExprPtr filtered(ExprPtr value) {
    while (true) {
      if (accept(T::Op, "|")) {
        auto f = node<Filter>();
        f->name = name();
        f->value = std::move(value);
        if (accept(T::Op, "(")) f->args = call_args();
        value = std::move(f);
      } else if (accept(T::Name, "is")) {
        auto t = node<Test>();
        t->negated = accept(T::Name, "not");
        t->name = name();  // tests are names: "none", "defined", "eq", ...
        t->value = std::move(value);
        if (accept(T::Op, "(")) {
          t->args = call_args();
        } else if (at(T::String) || at(T::Int) || at(T::Float) ||
                   (at(T::Name) && !at_name("and") && !at_name("or") && !at_name("else") && !at_name("if"))) {
          t->args.positional.push_back(postfix(primary()));  // `is divisibleby 3`, `is equalto 'x'`
        }
        value = std::move(t);
      } else {
        return value;
      }
    }
  }

  CallArgs call_args() {  // after "(", through ")"
    CallArgs args;
    while (!accept(T::Op, ")")) {
      if (at(T::Name) && peek(1).type == T::Op && peek(1).text == "=") {
        std::string key = next().text;
        next();
        args.keywords.emplace_back(std::move(key), expression());
      } else {
        args.positional.push_back(expression());
      }
      if (!at(T::Op, ")")) expect(T::Op, ",");
    }
    return args;
  }

  ExprPtr postfix(ExprPtr value) {
    while (true) {
      if (accept(T::Op, ".")) {
        auto a = node<Attribute>();
        a->object = std::move(value);
        a->name = name();
        value = std::move(a);
      } else if (accept(T::Op, "[")) {
        value = subscript(std::move(value));
      } else if (accept(T::Op, "(")) {
        auto c = node<Call>();
        c->callee = std::move(value);
        c->args = call_args();
        value = std::move(c);
      } else {
        return value;
      }
    }
  }

  ExprPtr subscript(ExprPtr object) {  // after "["
    ExprPtr start, stop, step;
    if (!at(T::Op, ":")) start = expression();
    if (accept(T::Op, "]")) {
      auto s = node<Subscript>();
      s->object = std::move(object);
      s->index = std::move(start);
      return s;
    }
    expect(T::Op, ":");
    if (!at(T::Op, ":") && !at(T::Op, "]")) stop = expression();
    if (accept(T::Op, ":") && !at(T::Op, "]")) step = expression();
    expect(T::Op, "]");
    auto s = node<Slice>();
    s->object = std::move(object);
    s->start = std::move(start);
    s->stop = std::move(stop);
    s->step = std::move(step);
    return s;
  }

  ExprPtr literal(Value v) {
    auto l = node<Literal>();
    l->value = std::move(v);
    return l;
  }

  ExprPtr primary() {
    const Token& t = peek();
    switch (t.type) {
      case T::String: {
        std::string s = next().text;
        while (at(T::String)) s += next().text;  // adjacent literals concatenate
        return literal(Value::from(std::move(s)));
      }
      case T::Int: return literal(Value::from(number<int64_t>("integer")));
      case T::Float: return literal(Value::from(number<double>("number")));
      case T::Name: {
        const std::string n = next().text;
        if (n == "true" || n == "True") return literal(Value::from(true));
        if (n == "false" || n == "False") return literal(Value::from(false));
        if (n == "none" || n == "None") return literal(Value::none());
        auto v = node<Name>();
        v->name = n;
        return v;
      }
      case T::Op:
        if (accept(T::Op, "(")) {
          ExprPtr e = expression();
          if (at(T::Op, ",")) {  // a tuple: treated as a list
            auto list = node<ListExpr>();
            list->items.push_back(std::move(e));
            while (accept(T::Op, ",") && !at(T::Op, ")")) list->items.push_back(expression());
            e = std::move(list);
          }
          expect(T::Op, ")");
          return e;
        }
        if (accept(T::Op, "[")) {
          auto list = node<ListExpr>();
          while (!accept(T::Op, "]")) {
            list->items.push_back(expression());
            if (!at(T::Op, "]")) expect(T::Op, ",");
          }
          return list;
        }
        if (accept(T::Op, "{")) {
          auto dict = node<DictExpr>();
          while (!accept(T::Op, "}")) {
            ExprPtr key = expression();
            expect(T::Op, ":");
            dict->items.emplace_back(std::move(key), expression());
            if (!at(T::Op, "}")) expect(T::Op, ",");
          }
          return dict;
        }
        break;
      default: break;
    }
    error("expected an expression");
  }

  std::vector<Token> tokens_;
  size_t pos_ = 0;
  int nesting_ = 0;
};

}  // namespace

Body parse(const std::string& source) { return Parser(tokenize(source)).parse_body({}); }

}  // namespace nanoserve::jinja
