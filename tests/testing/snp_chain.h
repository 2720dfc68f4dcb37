// A throwaway AMD-style SEV-SNP certificate chain for tests, made in the test: an RSA ARK and
// ASK signing with RSASSA-PSS (SHA-384, MGF1-SHA-384, salt 48) and P-384 VCEKs carrying AMD's
// TCB, hwID and productName extensions; and reports in AMD's layout signed by a VCEK key.
// Nothing here is a fixture copy: everything is generated fresh.
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "common/crypto.h"
#include "common/snp/report.h"

namespace berth::testing {

struct SnpVcekSpec {
  Bytes hwid;  // 64 bytes (8 on Turin); empty: none
  snp::Tcb tcb;
  std::optional<std::string> product_name;  // default: "<Product>-B0"
  int64_t not_before = 0;                   // unix; 0: now - 1 day
  int64_t not_after = 0;                    // unix; 0: now + 1 year
  bool pss = true;                          // false: signed with PKCS#1 v1.5 instead
  bool include_tcb = true;
  std::optional<std::string> csp_id;        // VLEKs: the cloud (1.3.6.1.4.1.3704.1.5)
};

struct SnpIssued {
  X509Ptr cert;
  EvpPkeyPtr key;
};

class SnpTestChain {
 public:
  // Fresh ARK and ASK for `product`. Aborts the test (ADD_FAILURE) on failure.
  explicit SnpTestChain(snp::Product product, int rsa_bits = 2048);

  snp::Product product() const { return product_; }
  X509* ark() const { return ark_.get(); }
  X509* ask() const { return ask_.get(); }
  X509* asvk() const { return asvk_.get(); }
  Bytes ArkDer() const;
  Bytes AskDer() const;
  Bytes AsvkDer() const;
  std::string ArkPem() const;

  // A VCEK (P-384) signed by this chain's ASK.
  SnpIssued IssueVcek(const SnpVcekSpec& spec) const;
  // A VLEK (P-384) signed by this chain's ASVK (no hwID: VLEKs name no chip).
  SnpIssued IssueVlek(const SnpVcekSpec& spec) const;
  // A CRL (DER) issued by this chain's ARK, RSASSA-PSS as AMD's, listing `revoked`, next update
  // at `next_update` (unix; 0: in a week).
  Bytes MakeCrl(const std::vector<X509*>& revoked, int64_t next_update = 0) const;

 private:
  snp::Product product_;
  EvpPkeyPtr ark_key_, ask_key_, asvk_key_;
  X509Ptr ark_, ask_, asvk_;
};

// The fields a test report sets; everything else is zero.
struct SnpReportSpec {
  uint32_t version = 2;
  uint64_t policy = 0x30000;  // SMT allowed, the reserved bit set
  uint32_t vmpl = 0;
  Bytes measurement = Bytes(48, 0x4d);
  Bytes report_data = Bytes(64, 0);
  Bytes chip_id = Bytes(64, 0xc1);
  uint64_t reported_tcb = 0;
  uint64_t current_tcb = 0;  // 0: reported_tcb
  snp::SigningKey signing_key = snp::SigningKey::kVcek;
  bool mask_chip_key = false;
  uint8_t cpuid_family = 0, cpuid_model = 0;  // version 3+
  uint64_t committed_tcb = 0;  // 0: reported_tcb
  uint64_t launch_tcb = 0;     // 0: reported_tcb
  Bytes host_data;             // 32 bytes; empty: zeros
  Bytes id_key_digest;         // 48 bytes; empty: zeros
  Bytes author_key_digest;     // 48 bytes; empty: zeros (AUTHOR_KEY_EN set when not empty)
};

// The report, signed with `vcek_key` (ECDSA P-384 / SHA-384, R and S little-endian).
Bytes MakeSnpReport(const SnpReportSpec& spec, EVP_PKEY* vcek_key);
// Re-signs report bytes [0, 0x2A0) in place.
void SignSnpReport(Bytes& report, EVP_PKEY* vcek_key);

// A P-384 key.
EvpPkeyPtr GenerateP384Key();

}  // namespace berth::testing
