// The crypto floor's measurement (berth-bench floor, BENCHMARKS.md) does the handshakes it
// claims: each one negotiates the ECDHE group it is reported under and carries the client
// certificate, or the measurement fails; a key that is not the certificate's is named.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "common/crypto.h"
#include "tests/bench/load.h"

namespace berth::bench {
namespace {

struct ServerIdentity {
  std::string cert_pem;
  SecretBytes key_pem;
};

ServerIdentity MakeServer(EVP_PKEY* cert_key, EVP_PKEY* key) {
  CertSpec spec{.common_name = "berthd", .dns_names = {"localhost"}, .server_auth = true};
  auto cert = IssueCert(spec, cert_key, nullptr, cert_key);
  EXPECT_TRUE(cert.ok()) << cert.status().ToString();
  auto cert_pem = CertToPem(cert->get());
  auto key_pem = PrivateKeyToPem(key);
  EXPECT_TRUE(cert_pem.ok() && key_pem.ok());
  return {*cert_pem, std::move(*key_pem)};
}

TEST(CryptoFloorTest, EveryOperationIsMeasuredWithTheHandshakeItNames) {
  auto key = GenerateP256Key();
  ASSERT_TRUE(key.ok());
  ServerIdentity server = MakeServer(key->get(), key->get());
  auto floor = MeasureCryptoFloor(server.cert_pem, std::string(server.key_pem.view()), 3);
  ASSERT_TRUE(floor.ok()) << floor.status().ToString();
  EXPECT_GT(floor->tls_handshake_server_us, 0);
  EXPECT_GT(floor->tls_handshake_p256_server_us, 0);
  EXPECT_GT(floor->quote_verify_us, 0);
  EXPECT_GT(floor->cert_sign_us, 0);
}

TEST(CryptoFloorTest, AKeyThatIsNotTheCertificatesIsNamed) {
  auto key = GenerateP256Key();
  auto other = GenerateP256Key();
  ASSERT_TRUE(key.ok() && other.ok());
  ServerIdentity server = MakeServer(key->get(), other->get());
  auto floor = MeasureCryptoFloor(server.cert_pem, std::string(server.key_pem.view()), 3);
  EXPECT_EQ(floor.status().code(), Code::kInvalidArgument);
  EXPECT_EQ(floor.status().message(), "berthd's key does not match its certificate");
}

}  // namespace
}  // namespace berth::bench
