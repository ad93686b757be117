#include "util/utf8.h"

#include <gtest/gtest.h>

namespace nanoserve {
namespace {

TEST(Utf8, EncodesEveryLength) {
  std::string s;
  for (char32_t cp : {U'A', U'é', U'北', U'👍'}) append_utf8(s, cp);
  EXPECT_EQ(s, "Aé北👍");
  size_t pos = 0;
  EXPECT_EQ(next_code_point(s, pos), U'A');
  EXPECT_EQ(next_code_point(s, pos), U'é');
  EXPECT_EQ(next_code_point(s, pos), U'北');
  EXPECT_EQ(next_code_point(s, pos), U'👍');
  EXPECT_EQ(pos, s.size());
}

TEST(Utf8, PartialCharacterBecomesOneReplacement) {
  const std::string thumbs = "👍";  // 4 bytes
  for (size_t cut = 1; cut < 4; ++cut) EXPECT_EQ(valid_utf8("ok" + thumbs.substr(0, cut)), "ok\uFFFD");
  EXPECT_EQ(valid_utf8("ok" + thumbs), "ok" + thumbs);
  EXPECT_EQ(valid_utf8(""), "");
}

TEST(Utf8, CodePointBeforeAnEnd) {
  const std::string s = "a北👍";
  EXPECT_EQ(code_point_before(s, s.size()), U'👍');
  EXPECT_EQ(previous_code_point_start(s, s.size()), 4u);
  EXPECT_EQ(code_point_before(s, 4), U'北');
  EXPECT_EQ(code_point_before(s, 1), U'a');
}

TEST(Utf8, InvalidBytesDecodeAsReplacement) {
  size_t pos = 0;
  EXPECT_EQ(next_code_point("\xff", pos), char32_t{0xFFFD});
  EXPECT_EQ(pos, 1u);
}

}  // namespace
}  // namespace nanoserve
