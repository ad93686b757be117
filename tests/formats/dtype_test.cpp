// Conversions of the element types that have no library routine here: FP8 E4M3 (a KV cache dtype).
#include "formats/dtype.h"

#include <gtest/gtest.h>

#include <cmath>
#include <random>

namespace nanoserve {
namespace {

bool is_nan_code(int code) { return (code & 0x7f) == 0x7f; }

TEST(Fp8E4M3, DecodesItsCodes) {
  EXPECT_EQ(fp8_e4m3_to_float(0x38), 1.0f);
  EXPECT_EQ(fp8_e4m3_to_float(0x7e), 448.0f);  // the largest
  EXPECT_EQ(fp8_e4m3_to_float(0xfe), -448.0f);
  EXPECT_EQ(fp8_e4m3_to_float(0x08), 0.015625f);     // the smallest normal, 2^-6
  EXPECT_EQ(fp8_e4m3_to_float(0x01), 0.001953125f);  // the smallest subnormal, 2^-9
  EXPECT_EQ(fp8_e4m3_to_float(0x3b), 1.375f);        // 1 + 3/8
  EXPECT_EQ(fp8_e4m3_to_float(0x54), 12.0f);         // 1.5 * 2^3
  EXPECT_TRUE(std::isnan(fp8_e4m3_to_float(0x7f)));
  EXPECT_TRUE(std::signbit(fp8_e4m3_to_float(0x80)));  // -0
}

TEST(Fp8E4M3, EveryCodeRoundTrips) {
  for (int code = 0; code < 256; ++code) {
    if (is_nan_code(code)) continue;
    EXPECT_EQ(float_to_fp8_e4m3(fp8_e4m3_to_float(static_cast<uint8_t>(code))), code) << code;
  }
}

TEST(Fp8E4M3, RoundsToNearestEvenAndSaturates) {
  EXPECT_EQ(float_to_fp8_e4m3(1.0625f), 0x38);        // halfway between 1 and 1.125: to the even 1
  EXPECT_EQ(float_to_fp8_e4m3(1.1875f), 0x3a);        // halfway between 1.125 and 1.25: to the even 1.25
  EXPECT_EQ(float_to_fp8_e4m3(0.0029296875f), 0x02);  // 1.5 subnormal steps: to 2
  EXPECT_EQ(float_to_fp8_e4m3(0.0009765625f), 0x00);  // half a step: to 0
  EXPECT_EQ(float_to_fp8_e4m3(0.0146484375f), 0x08);  // 7.5 steps: up to the smallest normal
  EXPECT_EQ(float_to_fp8_e4m3(15.5f), 0x58);          // halfway 15 (0x57) and 16: 16 carries the exponent
  EXPECT_EQ(float_to_fp8_e4m3(460.0f), 0x7e);
  EXPECT_EQ(float_to_fp8_e4m3(1e30f), 0x7e);
  EXPECT_EQ(float_to_fp8_e4m3(-1e30f), 0xfe);
  EXPECT_TRUE(is_nan_code(float_to_fp8_e4m3(std::nanf(""))));
}

// Against a search of all codes: each value goes to the nearest, ties to the even code.
TEST(Fp8E4M3, PicksTheNearestCode) {
  std::mt19937 rng(3);
  std::uniform_real_distribution<float> exponent(-12.0f, 9.0f);
  for (int i = 0; i < 20000; ++i) {
    const float x = std::exp2(exponent(rng)) * (i % 2 ? -1.0f : 1.0f);
    if (std::fabs(x) >= 448.0f) continue;
    int best = -1;
    float best_distance = INFINITY;
    for (int code = 0; code < 256; ++code) {
      if (is_nan_code(code)) continue;
      const float distance = std::fabs(fp8_e4m3_to_float(static_cast<uint8_t>(code)) - x);
      if (distance < best_distance || (distance == best_distance && code % 2 == 0 && best % 2 == 1)) {
        best = code;
        best_distance = distance;
      }
    }
    const uint8_t got = float_to_fp8_e4m3(x);
    EXPECT_EQ(fp8_e4m3_to_float(got), fp8_e4m3_to_float(static_cast<uint8_t>(best))) << x;
  }
}

}  // namespace
}  // namespace nanoserve
