#include "util/json_fields.h"

#include <gtest/gtest.h>

#include "util/error.h"

namespace nanoserve {
namespace {

TEST(JsonFields, TypedReadsWithFallbacks) {
  auto j = nlohmann::json::parse(R"({"n": 3, "x": 0.5, "b": true, "s": "hi", "null": null})");
  JsonFields f(j, "test.json");
  EXPECT_EQ(f.positive_int("n"), 3);
  EXPECT_EQ(f.positive_int("null", 7), 7);  // null counts as absent
  EXPECT_DOUBLE_EQ(f.positive_number("x"), 0.5);
  EXPECT_TRUE(f.boolean("b", false));
  EXPECT_EQ(f.string("s"), "hi");
  EXPECT_EQ(f.string("missing", "fallback"), "fallback");
}

TEST(JsonFields, ErrorsNameFieldAndSource) {
  auto j = nlohmann::json::parse(R"({"n": 2.5, "b": "yes"})");
  JsonFields f(j, "test.json");
  try {
    f.positive_int("n");
    FAIL();
  } catch (const Error& e) {
    EXPECT_STREQ(e.what(), "test.json: field 'n' must be a positive integer, got 2.5");
  }
  EXPECT_THROW(f.boolean("b", false), Error);
  EXPECT_THROW(f.string("absent"), Error);
  EXPECT_THROW(JsonFields(nlohmann::json::array(), "x"), Error);
}

}  // namespace
}  // namespace nanoserve
