// SecretBytes: move-only key material that wipes itself; explicit copies only.
#include "common/secret.h"

#include <gtest/gtest.h>

#include <cstring>
#include <type_traits>

namespace berth {
namespace {

static_assert(!std::is_copy_constructible_v<SecretBytes>, "copies must be explicit (Clone)");
static_assert(!std::is_copy_assignable_v<SecretBytes>);
static_assert(std::is_nothrow_move_constructible_v<SecretBytes>);
static_assert(!std::is_convertible_v<SecretBytes, std::string>);

TEST(SecretBytesTest, HoldsItsBytes) {
  SecretBytes s("key!", 4);
  EXPECT_EQ(s.size(), 4u);
  EXPECT_FALSE(s.empty());
  EXPECT_EQ(s.view(), "key!");
  EXPECT_EQ(s.span().size(), 4u);
  EXPECT_EQ(s.span()[0], 'k');
  SecretBytes zeros(8);
  EXPECT_EQ(zeros.view(), std::string(8, '\0'));
  EXPECT_TRUE(SecretBytes().empty());
  EXPECT_EQ(SecretBytes().size(), 0u);
}

TEST(SecretBytesTest, MoveLeavesTheSourceEmpty) {
  SecretBytes a("abc", 3);
  SecretBytes b(std::move(a));
  EXPECT_EQ(b.view(), "abc");
  EXPECT_TRUE(a.empty());  // NOLINT(bugprone-use-after-move): the contract under test
  EXPECT_EQ(a.data(), nullptr);

  SecretBytes c("longer value", 12);
  c = std::move(b);
  EXPECT_EQ(c.view(), "abc");
  EXPECT_TRUE(b.empty());  // NOLINT(bugprone-use-after-move)
  SecretBytes& same = c;   // (through a reference: compilers warn at a literal self-move)
  c = std::move(same);     // self-move keeps the value
  EXPECT_EQ(c.view(), "abc");
}

TEST(SecretBytesTest, CloneIsAnIndependentCopy) {
  SecretBytes a("abc", 3);
  SecretBytes b = a.Clone();
  EXPECT_TRUE(a.Equals(b));
  EXPECT_NE(a.data(), b.data());
  b.data()[0] = 'x';
  EXPECT_EQ(a.view(), "abc");
  EXPECT_EQ(b.view(), "xbc");
  EXPECT_TRUE(SecretBytes().Clone().empty());
}

TEST(SecretBytesTest, EqualsComparesContentAndSize) {
  EXPECT_TRUE(SecretBytes("abc", 3).Equals(SecretBytes("abc", 3)));
  EXPECT_FALSE(SecretBytes("abc", 3).Equals(SecretBytes("abd", 3)));
  EXPECT_FALSE(SecretBytes("abc", 3).Equals(SecretBytes("ab", 2)));
  EXPECT_FALSE(SecretBytes("ab", 2).Equals(SecretBytes("abc", 3)));
  EXPECT_TRUE(SecretBytes().Equals(SecretBytes()));
  EXPECT_FALSE(SecretBytes().Equals(SecretBytes(1)));
}

TEST(SecretBytesTest, TakeFromWipesTheSourceString) {
  std::string token = "abcdef.0123456789abcdef";
  const char* buffer = token.data();
  const size_t size = token.size();
  SecretBytes s = SecretBytes::TakeFrom(token);
  EXPECT_EQ(s.view(), "abcdef.0123456789abcdef");
  EXPECT_TRUE(token.empty());
  // clear() keeps the buffer: the characters that were there are now zeros.
  EXPECT_EQ(std::string(buffer, size), std::string(size, '\0'));
}

TEST(WipeTest, WipeMemoryZeroesAndToleratesNothing) {
  char buf[16];
  std::memset(buf, 'k', sizeof buf);
  WipeMemory(buf, sizeof buf);
  EXPECT_EQ(std::string(buf, sizeof buf), std::string(16, '\0'));
  WipeMemory(nullptr, 10);  // no crash
  WipeMemory(buf, 0);
}

TEST(WipeTest, WipeStringZeroesTheCharactersAndClears) {
  std::string s = "a secret of some length";
  const char* p = s.data();
  const size_t n = s.size();
  WipeString(s);
  EXPECT_TRUE(s.empty());
  EXPECT_EQ(std::string(p, n), std::string(n, '\0'));
}

}  // namespace
}  // namespace berth
