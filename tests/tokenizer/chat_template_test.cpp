#include "tokenizer/chat_template.h"

#include <gtest/gtest.h>

#include "test_support.h"
#include "util/error.h"

namespace nanoserve {
namespace {

using json = nlohmann::json;

std::string render(const std::string& source, const json& context = json::object()) {
  return ChatTemplate(source).render(context);
}

// The message of the Error that parsing or rendering source throws.
std::string error_of(const std::string& source) {
  try {
    render(source);
  } catch (const Error& e) {
    return e.what();
  }
  return "(no error)";
}

json chat(std::initializer_list<std::pair<const char*, const char*>> turns) {
  json messages = json::array();
  for (const auto& [role, content] : turns) messages.push_back({{"role", role}, {"content", content}});
  return messages;
}

TEST(ChatTemplate, DemoModelTemplate) {
  auto t = ChatTemplate::from_model(test::demo_model_dir());
  ASSERT_TRUE(t.has_value());
  EXPECT_EQ(t->bos_token(), "<|begin_of_text|>");
  EXPECT_EQ(t->render({{"messages", chat({{"system", "Be brief."}, {"user", "  Who begat Enos?  "}})},
                       {"add_generation_prompt", true}}),
            "<|begin_of_text|>System: Be brief.\nUser: Who begat Enos?\nAssistant:");
  EXPECT_EQ(t->render({{"messages", chat({{"user", "Hi"}})}, {"add_generation_prompt", false}}),
            "<|begin_of_text|>User: Hi\n");
}

// tokenizer_config.json may list named templates; the one named "default" is the chat template.
// Entries of the wrong types are refused by name, not as a JSON type error.
TEST(ChatTemplate, NamedTemplateListsPickDefaultAndRefuseBadEntries) {
  const test::ScratchDir dir;
  const auto error_for = [&](const json& list) -> std::string {
    test::write_file(dir.file("tokenizer_config.json"), json{{"chat_template", list}}.dump());
    try {
      ChatTemplate::from_model(dir.path().string());
    } catch (const Error& e) {
      return e.what();
    }
    return "(no error)";
  };
  const std::string where = dir.file("tokenizer_config.json");
  const json tool_use = {{"name", "tool_use"}, {"template", "T"}},
             default_one = {{"name", "default"}, {"template", "D"}};
  EXPECT_EQ(error_for(json::array({tool_use, default_one})), "(no error)");
  EXPECT_EQ(ChatTemplate::from_model(dir.path().string())->render(json::object()), "D");
  EXPECT_EQ(error_for(json::array({{{"name", 7}, {"template", "x"}}, {{"name", "default"}, {"template", 3}}})),
            where + ": chat_template's entry named 'default' has no string 'template'");
  EXPECT_EQ(error_for(json::array({{{"name", json::array()}}, "default"})),
            where + ": chat_template lists no template named 'default'");
}

// Llama 3's template, verbatim: filters bind tighter than +, loop.index0, set inside a loop.
TEST(ChatTemplate, Llama3Template) {
  const std::string llama3 =
      "{% set loop_messages = messages %}{% for message in loop_messages %}{% set content = '<|start_header_id|>' + "
      "message['role'] + '<|end_header_id|>\n\n'+ message['content'] | trim + '<|eot_id|>' %}{% if loop.index0 == 0 "
      "%}{% "
      "set content = bos_token + content %}{% endif %}{{ content }}{% endfor %}{% if add_generation_prompt %}{{ "
      "'<|start_header_id|>assistant<|end_header_id|>\n\n' }}{% endif %}";
  EXPECT_EQ(render(llama3, {{"messages", chat({{"system", "S"}, {"user", " Hi "}})},
                            {"add_generation_prompt", true},
                            {"bos_token", "<|begin_of_text|>"}}),
            "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\nS<|eot_id|><|start_header_id|>user<|end_"
            "header_id|>"
            "\n\nHi<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n");
}

// trim_blocks drops the newline after a block tag; lstrip_blocks the indentation before one.
TEST(ChatTemplate, WhitespaceControl) {
  const json ctx = {{"messages", chat({{"a", "1"}, {"b", "2"}})}};
  EXPECT_EQ(render("{% for m in messages %}\n  {{ m.role }}\n{% endfor %}", ctx), "  a\n  b\n");
  EXPECT_EQ(
      render("{% for m in messages %}\n    {% if m.role == 'b' %}\n[{{ m.content }}]\n    {% endif %}\n{% endfor %}",
             ctx),
      "[2]\n");
  EXPECT_EQ(render("x  {%- if true -%}  y  {%- endif -%}  z"), "xyz");
  EXPECT_EQ(render("a {{- ' b ' -}} c"), "a b c");
  EXPECT_EQ(render("{# a comment #}\nkept"), "kept");
}

TEST(ChatTemplate, NamespaceMacrosAndLoops) {
  const std::string source =
      "{% set ns = namespace(system='', count=0) %}"
      "{% for m in messages %}{% if m.role == 'system' %}{% set ns.system = m.content %}{% else %}"
      "{% set ns.count = ns.count + 1 %}{% endif %}{% endfor %}"
      "{% macro tag(name, value='-') %}<{{ name }}={{ value }}>{% endmacro %}"
      "{{ tag('sys', ns.system) }}{{ tag('n', ns.count) }}{{ tag('x') }}"
      "{% for m in messages if m.role != 'system' %}{{ loop.index }}/{{ loop.length }}{{ ',' if not loop.last }}{% "
      "endfor %}"
      "{% for i in range(5) %}{% if i == 1 %}{% continue %}{% endif %}{% if i == 3 %}{% break %}{% endif %}{{ i }}{% "
      "endfor %}";
  EXPECT_EQ(render(source, {{"messages", chat({{"system", "S"}, {"user", "u"}, {"assistant", "a"}})}}),
            "<sys=S><n=2><x=->1/2,2/202");
}

TEST(ChatTemplate, ExpressionsFiltersAndMethods) {
  EXPECT_EQ(render("{{ 'hello'[1:3] }}{{ [1, 2, 3][::-1] }}{{ ' x '.strip() }}{{ 'a,b'.split(',') }}"),
            "el[3, 2, 1]x['a', 'b']");
  EXPECT_EQ(render("{{ 7 // 2 }} {{ 7 / 2 }} {{ 2 ** 10 }} {{ -7 % 3 }} {{ 'ab' * 2 }} {{ 1 ~ 'x' }}"),
            "3 3.5 1024 2 abab 1x");
  EXPECT_EQ(render("{{ x is defined }} {{ none is none }} {{ 3 is odd }} {{ 'a' in 'cat' }} {{ 2 not in [1] }}"),
            "False True True True True");
  EXPECT_EQ(render("{{ d | tojson }}", {{"d", {{"a", json::array({1, 2.5, "x"})}, {"b", nullptr}}}}),
            "{\"a\": [1, 2.5, \"x\"], \"b\": null}");
  EXPECT_EQ(render("{{ d | tojson(indent=2) }}", {{"d", {{"k", json::array({1})}}}}), "{\n  \"k\": [\n    1\n  ]\n}");
  EXPECT_EQ(render("{{ d.items() | list }} {{ d.get('z', 'none') }} {{ d | length }}", {{"d", {{"k", 1}}}}),
            "[['k', 1]] none 1");
  EXPECT_EQ(render("{{ msgs | selectattr('role', 'equalto', 'user') | map(attribute='content') | join('+') }}",
                   {{"msgs", chat({{"user", "a"}, {"bot", "b"}, {"user", "c"}})}}),
            "a+c");
  EXPECT_EQ(
      render("{{ 'yes' if flag else 'no' }} {{ missing | default('d') }} {{ 'Ab cD' | title }} {{ 'x' | capitalize }}",
             {{"flag", false}}),
      "no d Ab Cd X");
  EXPECT_EQ(render("{% set xs = [] %}{% set _ = xs.append(1) %}{{ xs }}{{ {'a': none} }}{{ 1.0 }} {{ true }}"),
            "[1]{'a': None}1.0 True");
}

TEST(ChatTemplate, RaiseExceptionIsAnError) {
  try {
    render("{% if messages | length == 0 %}{{ raise_exception('Conversation roles must alternate') }}{% endif %}",
           {{"messages", json::array()}});
    FAIL();
  } catch (const Error& e) {
    EXPECT_STREQ(e.what(), "chat template raised an error: Conversation roles must alternate");
  }
}

TEST(ChatTemplate, SyntaxErrorsNameTheLine) {
  EXPECT_EQ(error_of("line one\n{% if x %}\nno end"), "chat template line 3: missing {% endif %}");
  EXPECT_EQ(error_of("ok\n\n{{ 1 + }}"), "chat template line 3: expected an expression (at '')");
  EXPECT_EQ(error_of("{% frobnicate %}"), "chat template line 1: unsupported statement 'frobnicate'");
  EXPECT_EQ(error_of("{{ 'open }}"), "chat template line 1: unterminated string");
  EXPECT_EQ(error_of("{{ x | nosuchfilter }}"), "chat template line 1: unknown filter 'nosuchfilter'");
  EXPECT_EQ(error_of("{{ 1 / 0 }}"), "chat template line 1: division by zero");
  // Found by fuzz_chat_template: literals that do not fit used to escape as std::out_of_range.
  EXPECT_EQ(error_of("{{ [2, 66666666666666666666666] }}"),
            "chat template line 1: integer literal out of range (at '66666666666666666666666')");
  const std::string huge = "1" + std::string(400, '0') + ".5";  // past the largest double
  EXPECT_EQ(error_of("\n{{ " + huge + " }}"), "chat template line 2: number literal out of range (at '" + huge + "')");
}

TEST(ChatTemplate, RunawayOutputAndRecursionAreBounded) {
  EXPECT_THROW(
      render("{% for i in range(1000000) %}{{ 'xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx' }}{% endfor %}"),
      Error);
  EXPECT_THROW(render("{% macro f(n) %}{{ f(n + 1) }}{% endmacro %}{{ f(0) }}"), Error);
  EXPECT_THROW(render("{{ 'ab' * 10000000000 }}"), Error);  // refused before it is built
  // Values that grow without being printed (found by fuzz_chat_template as a 1.4 GB render).
  try {
    render("{% set ns = namespace(x=[1]) %}{% for i in range(40) %}{% set ns.x = ns.x + ns.x %}{% endfor %}");
    FAIL() << "a list of 2^40 items was built";
  } catch (const Error& e) {
    EXPECT_STREQ(e.what(), "chat template: a list of 131072 items is over the limit of 100000");
  }
  EXPECT_THROW(render("{% set s = 'x' * 16000000 %}{% set l = [] %}{% for i in range(1000) %}{% set _ = l.append(s) %}"
                      "{% endfor %}{{ l | length }}"),
               Error);
}

// Work is bounded as well as memory (issue 26): each of these hung the server's io thread. The
// budget counts work, not time, so a render ends the same way on any machine (about 0.5 s at
// worst in Release here; the server's tests check the time).
TEST(ChatTemplate, RunawayWorkIsBounded) {
  const std::string budget =
      "chat template: the render did over 4000000 units of work (a loop or recursion without end?)";
  EXPECT_EQ(error_of("{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}"), budget);
  EXPECT_EQ(error_of("{% macro f(n) %}{% if n < 60 %}{{ f(n + 1) }}{{ f(n + 1) }}{% endif %}{% endmacro %}{{ f(0) }}"),
            budget);
  EXPECT_EQ(error_of("{{ range(100000) | unique | length }}"), budget);  // quadratic in the list
  EXPECT_EQ(error_of("{% set s = 'x' * 10000000 %}{% for i in range(100000) %}{{ 'y' in s }}{% endfor %}"), budget);
  // Lists kept rather than walked: the items a render builds are bounded too (memory, not time).
  EXPECT_EQ(error_of("{% set l = [] %}{% for i in range(100) %}{{ l.append(range(99999)) }}{% endfor %}"), budget);
  EXPECT_EQ(error_of("{{ range(1000000) }}"), "chat template: a list of 1000000 items is over the limit of 100000");
  EXPECT_EQ(error_of("{{ range(-9223372036854775807, 9223372036854775807) }}"), "range() of more than 100000 items");
  EXPECT_EQ(render("{{ range(9223372036854775806, 9223372036854775807, 5) | list }} {{ range(5, 0, -2) | list }}"),
            "[9223372036854775806] [5, 3, 1]");
  // A loop that runs only when a message holds a word: harmless until that message arrives.
  const std::string trap =
      "{% for m in messages %}{% if 'loop' in m.content %}{% for i in range(100000) %}"
      "{% for j in range(100000) %}{% endfor %}{% endfor %}{% endif %}{{ m.content }}{% endfor %}";
  EXPECT_EQ(render(trap, {{"messages", chat({{"user", "hello"}})}}), "hello");
  EXPECT_THROW(render(trap, {{"messages", chat({{"user", "loop"}})}}), Error);
  // The budget is per render: a real template rendered many times stays far below it.
  const ChatTemplate t(*ChatTemplate::from_model(test::demo_model_dir()));
  for (int i = 0; i < 100; ++i) t.render({{"messages", chat({{"user", "Hi"}})}, {"add_generation_prompt", true}});
}

// Lists and dicts are shared, so a template could make one contain itself; printing, comparing or
// converting it recursed until the stack overflowed (issue 26). Values nest at most 256 levels.
TEST(ChatTemplate, SelfContainingAndDeepValuesAreErrors) {
  EXPECT_EQ(error_of("{% set l = [] %}{{ l.append(l) }}{{ l | tojson }}"),
            "chat template line 1: cannot append a list to itself");
  EXPECT_EQ(error_of("{% set l = [] %}{% set m = [l] %}{{ l.append(m) }}"),
            "chat template line 1: cannot append a list to itself");
  EXPECT_EQ(error_of("{% set ns = namespace(x=1) %}{% set ns.x = [ns] %}"),
            "chat template line 1: cannot set 'ns.x' to a value that contains ns");
  const std::string deep = "{% set ns = namespace(x=[]) %}{% for i in range(300) %}{% set ns.x = [ns.x] %}{% endfor %}";
  const std::string too_deep = "chat template: a value nested deeper than 256 levels (a list that contains itself?)";
  EXPECT_EQ(error_of(deep + "{{ ns.x | tojson }}"), too_deep);
  EXPECT_EQ(error_of(deep + "{{ ns.x }}"), too_deep);
  EXPECT_EQ(error_of(deep + "{{ ns.x == ns.x }}"), too_deep);
  json nested = json::array();
  for (int i = 0; i < 300; ++i) nested = json::array({nested});
  try {
    render("{{ x }}", {{"x", nested}});
    FAIL() << "a 300-level value was converted";
  } catch (const Error& e) {
    EXPECT_EQ(std::string(e.what()), too_deep);
  }
  EXPECT_EQ(render("{% set l = [1] %}{{ l.append([2]) }}{{ l }}"), "None[1, [2]]");  // appending another list is fine
}

// Found by fuzz_chat_template: 250 nested brackets overflowed the parser's stack, and 10 ** 100
// cast an infinite double to int64.
TEST(ChatTemplate, DeepNestingAndIntegerOverflowAreErrors) {
  EXPECT_EQ(error_of("{{ " + std::string(250, '[') + std::string(250, ']') + " }}"),
            "chat template line 1: nested deeper than 100 levels");
  std::string nested_ifs;
  for (int i = 0; i < 150; ++i) nested_ifs += "{% if true %}";
  EXPECT_EQ(error_of(nested_ifs), "chat template line 1: nested deeper than 100 levels");
  EXPECT_EQ(error_of("{{ 10 ** 100 }}"), "chat template line 1: integer overflow in 10 ** 100");
  EXPECT_EQ(error_of("{{ 9223372036854775807 + 1 }}"),
            "chat template line 1: integer overflow in 9223372036854775807 + 1");
  EXPECT_EQ(error_of("{{ 3037000500 * 3037000500 }}"),
            "chat template line 1: integer overflow in 3037000500 * 3037000500");
  // Found by fuzz_chat_template: tojson of a string literal holding invalid UTF-8 threw nlohmann's
  // type_error past the template's error handling; the bytes print as U+FFFD.
  EXPECT_EQ(render("{{ 'a\xff' | tojson }}"), "\"a\xEF\xBF\xBD\"");
  // Found by timing fuzz_chat_template's slowest inputs: a huge indent allocated a pad per line.
  EXPECT_EQ(error_of("{{ [1, 2] | tojson(indent=2000000000) }}"),
            "chat template line 1: an indent of 2000000000 spaces is over the limit of 256");
  EXPECT_EQ(error_of("{{ 'ab' | indent(99999999999) }}"),
            "chat template line 1: an indent of 99999999999 spaces is over the limit of 256");
  EXPECT_EQ(render("{{ [1] | tojson(indent=2) }}|{{ 'a\nb' | indent(2) }}"), "[\n  1\n]|a\n  b");
  // Python's results where they fit.
  EXPECT_EQ(render("{{ 2 ** 62 }} {{ -7 // 2 }} {{ -7 % 3 }} {{ 7 % -3 }} {{ -7.5 % 2 }} {{ 2 ** -1 }}"),
            "4611686018427387904 -4 2 -2 0.5 0.5");
}

}  // namespace
}  // namespace nanoserve
