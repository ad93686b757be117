#include "engine/stop_matcher.h"

#include <gtest/gtest.h>

namespace nanoserve {
namespace {

TEST(StopMatcher, HoldsBackOnlyWhatCouldStartAStop) {
  StopMatcher m({"END"});
  EXPECT_EQ(m.push("hello E"), "hello ");  // "E" might start END
  EXPECT_EQ(m.push("x"), "Ex");            // no longer can
  EXPECT_EQ(m.push("EN"), "");
  EXPECT_EQ(m.push("D tail"), "");  // END found: nothing from it on is emitted
  EXPECT_TRUE(m.stopped());
  EXPECT_EQ(m.push("more"), "");
}

TEST(StopMatcher, StopSplitAcrossManyPieces) {
  StopMatcher m({"\n\nUser:"});
  std::string out;
  for (const char* piece : {"Sure", ".", "\n", "\n", "Us", "er", ":", " next"}) out += m.push(piece);
  EXPECT_EQ(out, "Sure.");
  EXPECT_TRUE(m.stopped());
}

TEST(StopMatcher, FlushReturnsHeldText) {
  StopMatcher m({"abc", "xyz"});
  EXPECT_EQ(m.push("123ab"), "123");
  EXPECT_EQ(m.flush(), "ab");
  EXPECT_FALSE(m.stopped());
}

TEST(StopMatcher, EarliestStopWins) {
  StopMatcher m({"world", "lo"});
  EXPECT_EQ(m.push("hello world"), "hel");
}

}  // namespace
}  // namespace nanoserve
