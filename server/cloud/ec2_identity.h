// EC2 instance identity documents (docs/lifecycle.md "Cloud events"): the proof that a node
// claiming an EC2 instance ID read that instance's metadata service from inside it.
//
// The agent fetches the JSON document (/latest/dynamic/instance-identity/document) and its
// PKCS#7 signature (/latest/dynamic/instance-identity/rsa2048, RSA-2048 with SHA-256) over
// IMDSv2 and sends both with its join (JoinRequest.ec2_identity). berthd verifies the PKCS#7
// SignedData with OpenSSL against AWS's certificate for the document's region, and only that:
// certificates inside the message are ignored (PKCS7_NOINTERN), the signer must be the pinned
// certificate itself (self-signed, so there is no chain to build: PKCS7_NOVERIFY). The signed
// content, not the separately sent copy, is what is parsed.
//
// What it proves, and what not: that whoever sent it obtained the document of that instance,
// which AWS serves only to the instance (or to anyone the instance, or a process on it, showed
// it to). It is not bound to the join: it carries no nonce and never changes while the
// instance lives. berth limits the replay by what the document is used for: it redeems one
// pre-authorization, for the instance an SNS "running" event announced, once, in the
// transaction that writes the node's record, before the pre-authorization expires. With a TPM,
// the document does not prove that the TPM that quoted is inside that instance.
//
// Thread-safe: pure functions of their inputs.
#pragma once

#include <map>
#include <string>
#include <vector>

#include "berth/v1/berth.pb.h"
#include "common/status.h"
#include "verify/ec2_identity_policy.h"

namespace berth::server {

// A region's signing certificate (PEM).
struct Ec2RegionCertificate {
  std::string region;
  std::string pem;
};
// AWS's RSA-2048 certificates for the common regions (ec2_identity_certs.cc).
const std::vector<Ec2RegionCertificate>& CompiledInEc2Certificates();

// What a verified document says.
struct Ec2Identity {
  std::string instance_id;
  std::string account_id;
  std::string region;
  std::string availability_zone;
  std::string image_id;
  std::string pending_time;
};

// Verifies `identity` against AWS's certificate for its region (the policy's when it names the
// region, else the compiled-in one) and the policy's account and region lists. INVALID_ARGUMENT
// for a malformed document or signature; PERMISSION_DENIED naming the reason for one that does
// not verify, a region without a certificate, or an account or region the policy does not
// allow.
Result<Ec2Identity> VerifyEc2Identity(const v1::Ec2InstanceIdentity& identity,
                                      const verify::Ec2IdentityPolicy& policy);

}  // namespace berth::server
