// The channel binding of DESIGN.md, against values computed independently.
#include "common/binding.h"

#include <gtest/gtest.h>

#include "common/crypto.h"

namespace berth {
namespace {

// Computed with Python's hashlib, independently of this code:
//   nonce = bytes(range(32))
//   spki = hashlib.sha256(b"berth test client key").digest()
//   hashlib.sha256(b"berth-evidence-v1" + nonce + spki).hexdigest()
TEST(BindingTest, KnownAnswer) {
  Bytes nonce(32);
  for (int i = 0; i < 32; ++i) nonce[i] = static_cast<uint8_t>(i);
  Bytes spki_sha256 = Sha256(ToBytes("berth test client key"));
  ASSERT_EQ(HexEncode(spki_sha256),
            "767a796bd6a9b68b324036b591c68efd765507ccc6ba690a4528b271aa8a21b9");
  EXPECT_EQ(HexEncode(ComputeBinding(nonce, spki_sha256)),
            "24fe086ac5e55800c9205a97afaba347a7f8c2088955d1be22d16e63083464b1");
}

TEST(BindingTest, CommitsToBothNonceAndKey) {
  Bytes nonce(32, 1), key(32, 2);
  Bytes base = ComputeBinding(nonce, key);
  EXPECT_EQ(base.size(), 32u);
  Bytes other_nonce = nonce;
  other_nonce[31] ^= 1;
  Bytes other_key = key;
  other_key[0] ^= 1;
  EXPECT_NE(ComputeBinding(other_nonce, key), base);
  EXPECT_NE(ComputeBinding(nonce, other_key), base);
  EXPECT_EQ(ComputeBinding(nonce, key), base);
}

TEST(BindingTest, SnpReportDataIsTheBindingThenTheIdentityKeysCommitment) {
  Bytes binding = ComputeBinding(Bytes(32, 7), Bytes(32, 8));
  Bytes spki = {0x30, 0x59, 0x01, 0x02};
  Bytes report_data = SnpReportData(binding, spki);
  ASSERT_EQ(report_data.size(), 64u);
  EXPECT_EQ(Bytes(report_data.begin(), report_data.begin() + 32), binding);
  // hashlib.sha256(b"berth-snp-identity-v1" + bytes([0x30, 0x59, 1, 2])), independently
  EXPECT_EQ(HexEncode(std::span<const uint8_t>(report_data).subspan(32)),
            "0cdc6526cb970dddca94abf6836354668c868c97392a7a1031a28ce266665c5e");
  Bytes other = spki;
  other[3] ^= 1;
  EXPECT_NE(SnpReportData(binding, other), report_data);
  EXPECT_EQ(ToString(SnpIdentityProofMessage(Bytes{1, 2})), std::string("berth-snp-identity-proof-v1\x01\x02", 29));
}

}  // namespace
}  // namespace berth
