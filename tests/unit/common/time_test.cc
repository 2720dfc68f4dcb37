// Time formatting and parsing (common/time.h).
#include "common/time.h"

#include <gtest/gtest.h>

namespace berth {
namespace {

TEST(TimeTest, Rfc3339IsUtc) {
  EXPECT_EQ(Rfc3339(0), "1970-01-01T00:00:00Z");
  EXPECT_EQ(Rfc3339(1'795'000'000), "2026-11-18T11:06:40Z");
}

TEST(TimeTest, ParseRfc3339) {
  EXPECT_EQ(*ParseRfc3339("2025-01-01T00:00:00Z"), 1735689600);
  EXPECT_EQ(*ParseRfc3339("2025-01-01T02:00:00.5+02:00"), 1735689600);
  EXPECT_EQ(ParseRfc3339("2025-01-01T00:00:00").status().message(),
            "\"2025-01-01T00:00:00\" needs a time zone (Z or +hh:mm)");
  EXPECT_EQ(ParseRfc3339("2025-13-01T00:00:00Z").status().code(), Code::kInvalidArgument);
}

}  // namespace
}  // namespace berth
