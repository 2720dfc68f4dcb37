// The etcd PKI of control-plane nodes (docs/etcd.md): a node makes its etcd keys itself and
// sends CSRs; berthd checks them and signs a server and a peer certificate with the etcd CA,
// whose private key is read from a file on the control-plane node; berthd hands it only to the
// control planes it admits, for their own berthd (berthd --join-ca-key).
// berthd also signs the CRL that lists every revoked etcd certificate.
#pragma once

#include <chrono>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "berth/v1/nodes.pb.h"
#include "common/crypto.h"

namespace berth {

// Checks a node's etcd CSR (`which`: "server" or "peer", for messages): DER PKCS#10 without
// trailing data; signed by the key it carries (proof of possession); the key EC P-256 or P-384,
// or RSA of 2048 to 8192 bits; the subject exactly one CN, equal to `node_name`. Requested
// extensions are ignored: berthd decides what the certificate says. Returns the public key;
// INVALID_ARGUMENT naming the problem otherwise.
Result<EvpPkeyPtr> CheckEtcdCsr(std::span<const uint8_t> der, const std::string& node_name,
                                std::string_view which);

// The subject alternative names of a member's certificates: the node name, the node's
// addresses (IP literals or DNS names, at most 16), localhost, 127.0.0.1 and ::1.
// INVALID_ARGUMENT for an address that is neither an IP nor a DNS name.
Result<CertSpec> EtcdMemberCertSpec(const std::string& node_name,
                                    const std::vector<std::string>& addresses,
                                    std::chrono::seconds validity);

struct IssuedEtcdCert {
  std::string pem;
  v1::EtcdIssuedCertificate log;  // the issued-certificate log entry
};

// A certificate's serial as berth writes it: lowercase hex without leading zero bytes.
std::string SerialHex(X509* cert);

// Thread-safe: immutable after Load; OpenSSL signs with a shared key safely.
class EtcdCa {
 public:
  // The CA certificate and its private key (PEM files). The certificate must be a CA and the
  // key must be its key. `cert_validity` is the lifetime of the member certificates it signs.
  static Result<std::unique_ptr<EtcdCa>> Load(const std::string& cert_path,
                                              const std::string& key_path,
                                              std::chrono::seconds cert_validity);
  static Result<std::unique_ptr<EtcdCa>> FromPem(const std::string& cert_pem,
                                                 const SecretBytes& key_pem,
                                                 std::chrono::seconds cert_validity);

  const std::string& cert_pem() const { return cert_pem_; }

  // Signs `kind` ("server" or "peer") for `key` (from a checked CSR): EKU serverAuth and
  // clientAuth (etcd uses both certificates in both directions), SANs as EtcdMemberCertSpec.
  Result<IssuedEtcdCert> Issue(std::string_view kind, EVP_PKEY* key, const std::string& node_name,
                               const std::vector<std::string>& addresses, int64_t now_unix) const;

  // The CRL (PEM, v2, signed with SHA-256) listing `revoked`; thisUpdate = now, nextUpdate =
  // now + 30 days, CRL number `number` (callers pass a value that grows with the list, e.g.
  // the etcd revision of the newest revocation, so every replica makes the same CRL).
  Result<std::string> MakeCrl(const std::vector<v1::EtcdRevokedCertificate>& revoked,
                              int64_t now_unix, int64_t number) const;

 private:
  EtcdCa() = default;
  X509Ptr cert_;
  EvpPkeyPtr key_;
  std::string cert_pem_;
  std::chrono::seconds cert_validity_{0};
};

}  // namespace berth
