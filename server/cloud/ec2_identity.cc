#include "server/cloud/ec2_identity.h"

#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/pkcs7.h>
#include <openssl/x509.h>

#include <algorithm>
#include <nlohmann/json.hpp>
#include <regex>

#include "common/crypto.h"

namespace berth::server {

namespace {

// Documents are about 500 bytes, their signatures about 1.7 KiB; anything far larger is not one.
constexpr size_t kMaxDocument = 16 << 10;
constexpr size_t kMaxSignature = 32 << 10;

struct Pkcs7Free {
  void operator()(PKCS7* p) const { PKCS7_free(p); }
};
struct BioFree {
  void operator()(BIO* b) const { BIO_free(b); }
};
struct X509StoreFree {
  void operator()(X509_STORE* s) const { X509_STORE_free(s); }
};
struct X509StackFree {
  void operator()(STACK_OF(X509) * s) const { sk_X509_pop_free(s, X509_free); }
};

// The region's certificates: the policy's, else the compiled-in ones.
Result<std::vector<X509Ptr>> RegionCertificates(const verify::Ec2IdentityPolicy& policy,
                                                const std::string& region) {
  std::string pem;
  if (auto it = policy.certificates.find(region); it != policy.certificates.end()) {
    pem = it->second;
  } else {
    for (const auto& c : CompiledInEc2Certificates()) {
      if (c.region == region) pem = c.pem;
    }
  }
  if (pem.empty()) {
    return PermissionDenied("EC2 instance identity document: no signing certificate is known for "
                            "region " + region +
                            " (add AWS's RSA-2048 certificate for it under "
                            "admission.ec2_identity.certificates)");
  }
  return CertsFromPem(pem);
}

std::string Field(const nlohmann::json& doc, const char* name) {
  auto it = doc.find(name);
  return it != doc.end() && it->is_string() ? it->get<std::string>() : "";
}

}  // namespace

Result<Ec2Identity> VerifyEc2Identity(const v1::Ec2InstanceIdentity& identity,
                                      const verify::Ec2IdentityPolicy& policy) {
  const std::string& sent = identity.document();
  const std::string& signature = identity.pkcs7();
  if (signature.empty() || signature.size() > kMaxSignature || sent.size() > kMaxDocument) {
    return InvalidArgument("EC2 instance identity document: " +
                           std::string(signature.empty() ? "no PKCS#7 signature"
                                                         : "the document or its signature is too large"));
  }
  const auto* p = reinterpret_cast<const unsigned char*>(signature.data());
  std::unique_ptr<PKCS7, Pkcs7Free> p7(d2i_PKCS7(nullptr, &p, static_cast<long>(signature.size())));
  if (!p7 || p != reinterpret_cast<const unsigned char*>(signature.data()) + signature.size() ||
      !PKCS7_type_is_signed(p7.get())) {
    ERR_clear_error();
    return InvalidArgument("EC2 instance identity document: the signature is not a DER PKCS#7 "
                           "SignedData");
  }
  // AWS embeds the document in the SignedData; a detached signature covers the sent copy.
  const bool detached = PKCS7_get_detached(p7.get()) != 0;
  std::string embedded;
  if (!detached) {
    const ASN1_OCTET_STRING* content = p7->d.sign->contents->d.data;
    if (content == nullptr || !PKCS7_type_is_data(p7->d.sign->contents)) {
      return InvalidArgument("EC2 instance identity document: the SignedData carries no data");
    }
    embedded.assign(reinterpret_cast<const char*>(ASN1_STRING_get0_data(content)),
                    static_cast<size_t>(ASN1_STRING_length(content)));
    if (!sent.empty() && sent != embedded) {
      return PermissionDenied("EC2 instance identity document: the document sent is not the one "
                              "its signature covers");
    }
  } else if (sent.empty()) {
    return InvalidArgument("EC2 instance identity document: a detached signature and no document");
  }
  const std::string& text = detached ? sent : embedded;
  // The region picks the certificate; the signature then vouches for it.
  nlohmann::json doc = nlohmann::json::parse(text, nullptr, false);
  if (doc.is_discarded() || !doc.is_object()) {
    return InvalidArgument("EC2 instance identity document: not a JSON object");
  }
  Ec2Identity out{.instance_id = Field(doc, "instanceId"),
                  .account_id = Field(doc, "accountId"),
                  .region = Field(doc, "region"),
                  .availability_zone = Field(doc, "availabilityZone"),
                  .image_id = Field(doc, "imageId"),
                  .pending_time = Field(doc, "pendingTime")};
  if (out.instance_id.empty() || out.account_id.empty() || !verify::IsAwsRegionName(out.region)) {
    return InvalidArgument("EC2 instance identity document: no instanceId, accountId or region");
  }
  BERTH_ASSIGN_OR_RETURN(std::vector<X509Ptr> certs, RegionCertificates(policy, out.region));
  std::unique_ptr<STACK_OF(X509), X509StackFree> signers(sk_X509_new_null());
  for (auto& c : certs) {
    if (!signers || sk_X509_push(signers.get(), c.get()) == 0) return OpenSslError("collecting certificates");
    c.release();  // the stack owns it now
  }
  std::unique_ptr<X509_STORE, X509StoreFree> store(X509_STORE_new());
  std::unique_ptr<BIO, BioFree> in(
      detached ? BIO_new_mem_buf(sent.data(), static_cast<int>(sent.size())) : nullptr);
  std::unique_ptr<BIO, BioFree> out_bio(BIO_new(BIO_s_mem()));
  if (!store || !out_bio || (detached && !in)) return OpenSslError("verifying a PKCS#7 signature");
  // NOINTERN: the signer must be one of the pinned certificates, never one the message
  // carries; NOVERIFY: those are self-signed trust anchors, there is no chain to build.
  const int ok = PKCS7_verify(p7.get(), signers.get(), store.get(), in.get(), out_bio.get(),
                              PKCS7_NOINTERN | PKCS7_NOVERIFY | PKCS7_BINARY);
  ERR_clear_error();
  if (ok != 1) {
    return PermissionDenied("EC2 instance identity document: its signature does not verify with "
                            "AWS's certificate for region " + out.region);
  }
  if (!policy.account_ids.empty() &&
      std::find(policy.account_ids.begin(), policy.account_ids.end(), out.account_id) ==
          policy.account_ids.end()) {
    return PermissionDenied("EC2 instance identity document: account " + out.account_id +
                            " is not in admission.ec2_identity.account_ids");
  }
  if (!policy.regions.empty() &&
      std::find(policy.regions.begin(), policy.regions.end(), out.region) == policy.regions.end()) {
    return PermissionDenied("EC2 instance identity document: region " + out.region +
                            " is not in admission.ec2_identity.regions");
  }
  return out;
}

}  // namespace berth::server
