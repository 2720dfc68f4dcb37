#include "tests/testing/ec2_documents.h"

#include <gtest/gtest.h>
#include <openssl/pkcs7.h>

#include <nlohmann/json.hpp>

namespace berth::testing {

TestAwsSigner MakeTestAwsSigner() {
  TestAwsSigner s;
  auto key = GenerateRsaKey(2048);
  EXPECT_TRUE(key.ok());
  s.key = std::move(*key);
  auto cert = IssueCert({.common_name = "test, not Amazon Web Services LLC",
                         .is_ca = true,
                         .validity = std::chrono::hours(24 * 365)},
                        s.key.get(), nullptr, s.key.get());
  EXPECT_TRUE(cert.ok());
  s.cert = std::move(*cert);
  s.cert_pem = *CertToPem(s.cert.get());
  return s;
}

std::string Ec2DocumentJson(const std::string& instance_id, const std::string& account_id,
                            const std::string& region) {
  return nlohmann::json{{"accountId", account_id},
                        {"architecture", "x86_64"},
                        {"availabilityZone", region + "a"},
                        {"billingProducts", nullptr},
                        {"devpayProductCodes", nullptr},
                        {"marketplaceProductCodes", nullptr},
                        {"imageId", "ami-0123456789abcdef0"},
                        {"instanceId", instance_id},
                        {"instanceType", "m6a.large"},
                        {"kernelId", nullptr},
                        {"pendingTime", "2027-01-15T08:00:00Z"},
                        {"privateIp", "10.0.1.23"},
                        {"ramdiskId", nullptr},
                        {"region", region},
                        {"version", "2017-09-30"}}
      .dump(2);
}

std::string SignEc2Document(const std::string& document, const TestAwsSigner& signer,
                            bool detached) {
  BIO* in = BIO_new_mem_buf(document.data(), static_cast<int>(document.size()));
  PKCS7* p7 = PKCS7_sign(signer.cert.get(), signer.key.get(), nullptr, in,
                         PKCS7_BINARY | (detached ? PKCS7_DETACHED : 0));
  BIO_free(in);
  EXPECT_NE(p7, nullptr);
  if (p7 == nullptr) return "";
  unsigned char* der = nullptr;
  int len = i2d_PKCS7(p7, &der);
  PKCS7_free(p7);
  std::string out(reinterpret_cast<const char*>(der), static_cast<size_t>(len));
  OPENSSL_free(der);
  return out;
}

v1::Ec2InstanceIdentity MakeEc2Identity(const std::string& instance_id,
                                        const std::string& account_id, const std::string& region,
                                        const TestAwsSigner& signer) {
  v1::Ec2InstanceIdentity out;
  out.set_document(Ec2DocumentJson(instance_id, account_id, region));
  out.set_pkcs7(SignEc2Document(out.document(), signer));
  return out;
}

std::string Ec2AdmissionPolicyYaml(const std::string& region, const TestAwsSigner& signer) {
  std::string out = "admission:\n  ec2_preauthorized_only: true\n  ec2_identity:\n"
                    "    certificates:\n      " + region + ": |\n";
  size_t at = 0;
  while (at < signer.cert_pem.size()) {
    size_t end = signer.cert_pem.find('\n', at);
    if (end == std::string::npos) end = signer.cert_pem.size();
    out += "        " + signer.cert_pem.substr(at, end - at) + "\n";
    at = end + 1;
  }
  return out;
}

}  // namespace berth::testing
