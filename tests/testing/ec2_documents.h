// EC2 instance identity documents for tests, signed as AWS signs them (PKCS#7 SignedData with
// the document embedded, RSA-2048 / SHA-256, the signer's certificate inside) by a test key
// whose self-signed certificate a test policy configures as a region's (never AWS's key).
#pragma once

#include <string>

#include "berth/v1/berth.pb.h"
#include "common/crypto.h"

namespace berth::testing {

struct TestAwsSigner {
  EvpPkeyPtr key;
  X509Ptr cert;
  std::string cert_pem;
};
// A fresh RSA-2048 key and a self-signed certificate, as AWS's regional ones are.
TestAwsSigner MakeTestAwsSigner();

// A document in AWS's format (2017-09-30) for this instance, account and region.
std::string Ec2DocumentJson(const std::string& instance_id, const std::string& account_id,
                            const std::string& region);

// `document` signed by `signer` (PKCS#7, DER), the document embedded unless `detached`.
std::string SignEc2Document(const std::string& document, const TestAwsSigner& signer,
                            bool detached = false);

// What the agent sends: the document and its signature.
v1::Ec2InstanceIdentity MakeEc2Identity(const std::string& instance_id,
                                        const std::string& account_id, const std::string& region,
                                        const TestAwsSigner& signer);

// The policy's admission section for tests: EC2 pre-authorization with `signer` as the
// region's certificate (YAML, ends with a newline).
std::string Ec2AdmissionPolicyYaml(const std::string& region, const TestAwsSigner& signer);

}  // namespace berth::testing
