// The recovery-key.txt berthd reads with --recovery-key (common/recovery.h): the key, or an
// error naming what is wrong with the file.
#include "common/recovery.h"

#include <gtest/gtest.h>

#include "common/crypto.h"

namespace berth::recovery {
namespace {

TEST(RecoveryKeyFileTest, ReadsTheKeyThatClusterInitWroteAndChecksItsFingerprint) {
  SecretBytes secret(Bytes(kSecretSize, 0x42).data(), kSecretSize);
  auto key = PublicKeyOf(secret);
  ASSERT_TRUE(key.ok());
  const std::string hex = HexEncode(*key);
  const std::string fingerprint = Fingerprint(*key);
  auto read = ParsePublicKeyFile("recovery-key-sha256: " + fingerprint +
                                 "\nrecovery-public-key: " + hex + "\n");
  ASSERT_TRUE(read.ok()) << read.status().ToString();
  EXPECT_EQ(*read, *key);
  // Without the fingerprint line, and with spaces around the value.
  EXPECT_EQ(*ParsePublicKeyFile("recovery-public-key:   " + hex + "  "), *key);

  EXPECT_EQ(ParsePublicKeyFile("recovery-key-sha256: " + fingerprint + "\n").status().ToString(),
            "INVALID_ARGUMENT: no \"recovery-public-key:\" line");
  EXPECT_EQ(ParsePublicKeyFile("recovery-public-key: " + hex.substr(2)).status().ToString(),
            "INVALID_ARGUMENT: recovery-public-key: expected 64 hex digits");
  EXPECT_EQ(ParsePublicKeyFile("recovery-public-key: zz" + hex.substr(2)).status().ToString(),
            "INVALID_ARGUMENT: recovery-public-key: expected 64 hex digits");
  // A fingerprint of another key: the file was edited or mixed up.
  std::string other = fingerprint;
  other[0] = other[0] == 'a' ? 'b' : 'a';
  EXPECT_EQ(ParsePublicKeyFile("recovery-key-sha256: " + other + "\nrecovery-public-key: " + hex)
                .status()
                .ToString(),
            "INVALID_ARGUMENT: recovery-key-sha256 is not the SHA-256 of recovery-public-key");
}

}  // namespace
}  // namespace berth::recovery
