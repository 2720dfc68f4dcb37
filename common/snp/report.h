// AMD SEV-SNP attestation reports and the AMD certificates that vouch for them: parsing only.
// Verification (signature, chain, policy) is verify/snp_verifier.h; berthd and berthctl share
// both.
//
// Layout: AMD "SEV Secure Nested Paging Firmware ABI Specification" (pub. 56860), Table
// "ATTESTATION_REPORT Structure". All integers are little-endian. Report versions 2 and 3 are
// parsed field by field; later versions are accepted with the version-3 layout, since AMD only
// adds fields in what earlier versions reserved.
//
// Everything here is a pure function of its input and thread-safe.
#pragma once

#include <openssl/x509.h>

#include <array>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>

#include "common/bytes.h"
#include "common/status.h"

namespace berth::snp {

inline constexpr size_t kReportSize = 0x4A0;  // 1184
inline constexpr size_t kSignedSize = 0x2A0;  // the signature covers [0, 0x2A0)
inline constexpr size_t kSignatureOffset = 0x2A0;
inline constexpr size_t kReportDataSize = 64;
inline constexpr size_t kMeasurementSize = 48;
inline constexpr size_t kChipIdSize = 64;
inline constexpr size_t kTurinHwIdSize = 8;  // Turin VCEKs name a chip by 8 bytes
inline constexpr uint32_t kSignatureAlgoEcdsaP384Sha384 = 1;

// The AMD product lines (each has its own ARK and ASK).
enum class Product { kUnknown, kMilan, kGenoa, kTurin };
std::string_view ProductName(Product p);  // "Milan", "Genoa", "Turin", "unknown"
// "Milan", "milan", "Milan-B0" (a VCEK productName) -> kMilan; anything else kUnknown.
Product ProductFromName(std::string_view name);
inline constexpr Product kAllProducts[] = {Product::kMilan, Product::kGenoa, Product::kTurin};

// Guest policy bits (the POLICY field).
inline constexpr int kPolicySmtBit = 16;
inline constexpr int kPolicyReservedOneBit = 17;  // must be 1
inline constexpr int kPolicyMigrateMaBit = 18;
inline constexpr int kPolicyDebugBit = 19;
inline constexpr int kPolicySingleSocketBit = 20;
inline constexpr int kPolicyCxlAllowBit = 21;
inline constexpr int kPolicyMemAes256XtsBit = 22;
inline constexpr int kPolicyRaplDisBit = 23;
inline constexpr int kPolicyCiphertextHidingBit = 24;
inline constexpr int kPolicyPageSwapDisableBit = 25;
// "smt" -> 16 ... ; nullopt for an unknown name. "debug" is a name too.
std::optional<int> PolicyBitFromName(std::string_view name);
std::string PolicyBitName(int bit);

// A TCB_VERSION split into its security patch levels. The byte layout differs by product:
//   Milan, Genoa: byte 0 bootloader, 1 TEE, 2-5 reserved, 6 SNP, 7 microcode
//   Turin:        byte 0 FMC, 1 bootloader, 2 TEE, 3 SNP, 4-6 reserved, 7 microcode
struct Tcb {
  uint8_t bootloader = 0;
  uint8_t tee = 0;
  uint8_t snp = 0;
  uint8_t microcode = 0;
  std::optional<uint8_t> fmc;  // Turin and later only

  bool operator==(const Tcb&) const = default;
  // "bootloader=3 tee=0 snp=8 microcode=115" (+ " fmc=N" when present)
  std::string ToString() const;
};
// kUnknown decodes with the Milan/Genoa layout (the only layout before Turin).
Tcb DecodeTcb(uint64_t raw, Product product);
uint64_t EncodeTcb(const Tcb& tcb, Product product);

// Who signed the report (SIGNING_KEY, bits 4:2 of offset 0x48).
enum class SigningKey { kVcek = 0, kVlek = 1, kNone = 7 };
std::string_view SigningKeyName(SigningKey k);  // "VCEK", "VLEK", "none"

struct Report {
  uint32_t version = 0;
  uint32_t guest_svn = 0;
  uint64_t policy = 0;
  std::array<uint8_t, 16> family_id{};
  std::array<uint8_t, 16> image_id{};
  uint32_t vmpl = 0;
  uint32_t signature_algo = 0;
  uint64_t current_tcb = 0;
  uint64_t platform_info = 0;
  bool author_key_en = false;
  bool mask_chip_key = false;
  SigningKey signing_key = SigningKey::kVcek;
  std::array<uint8_t, kReportDataSize> report_data{};
  std::array<uint8_t, kMeasurementSize> measurement{};
  std::array<uint8_t, 32> host_data{};
  std::array<uint8_t, 48> id_key_digest{};
  std::array<uint8_t, 48> author_key_digest{};
  std::array<uint8_t, 32> report_id{};
  std::array<uint8_t, 32> report_id_ma{};
  uint64_t reported_tcb = 0;  // 0x180: the TCB the VCEK was derived for
  // Version 3 and later: the CPUID family/model/stepping of the chip; 0 before.
  uint8_t cpuid_family = 0, cpuid_model = 0, cpuid_stepping = 0;
  std::array<uint8_t, kChipIdSize> chip_id{};
  uint64_t committed_tcb = 0;
  uint8_t current_build = 0, current_minor = 0, current_major = 0;
  uint8_t committed_build = 0, committed_minor = 0, committed_major = 0;
  uint64_t launch_tcb = 0;
  // ECDSA P-384 signature components as big-endian 48-byte integers (the report stores them
  // little-endian in 72-byte fields); `signature_high_nonzero` when the 24 bytes above the
  // 48 are not zero, which no valid P-384 signature has.
  std::array<uint8_t, 48> signature_r{}, signature_s{};
  bool signature_high_nonzero = false;
  Bytes raw;  // the whole report, as given

  bool debug() const { return (policy >> kPolicyDebugBit) & 1; }
  std::span<const uint8_t> signed_bytes() const { return {raw.data(), kSignedSize}; }
  // The product the report names (version 3+ CPUID fields), else kUnknown.
  Product product() const;
};

// Parses a report. INVALID_ARGUMENT (naming the field) when it is not 1184 bytes, its version
// is below 2, its signature algorithm is not ECDSA P-384/SHA-384, or SIGNING_KEY is reserved.
Result<Report> ParseReport(std::span<const uint8_t> data);

// What AMD's KDS writes into a VCEK or VLEK (OIDs 1.3.6.1.4.1.3704.1.*).
struct EndorsementKeyInfo {
  std::string product_name;  // 1.3.6.1.4.1.3704.1.2, e.g. "Milan-B0"; may be empty
  Tcb tcb;                   // 1.3.6.1.4.1.3704.1.3.{1,2,3,8[,9]}
  bool has_tcb = false;      // all four mandatory SPL extensions were present
  Bytes hwid;                // 1.3.6.1.4.1.3704.1.4 (VCEK only): 64 bytes, 8 on Turin
  std::string csp_id;        // 1.3.6.1.4.1.3704.1.5 (VLEK only)
};
// INVALID_ARGUMENT when an AMD extension is malformed (an SPL that is not a small INTEGER).
Result<EndorsementKeyInfo> ParseEndorsementKeyInfo(X509* cert);

// A certificate in PEM or DER (the first one of a PEM bundle).
Result<Bytes> CertificateToDer(std::string_view pem_or_der);

// The extended report's certificate table (GHCB spec, SNP_GET_EXT_REPORT): entries of
// {GUID (16 bytes, RFC 4122 byte order), offset u32, length u32}, ended by an all-zero entry;
// offsets are from the start of the table.
struct CertTable {
  Bytes vcek, vlek, ask, ark;  // empty when absent
};
inline constexpr char kVcekGuid[] = "63da758d-e664-4564-adc5-f4b93be8accd";
inline constexpr char kVlekGuid[] = "a8074bc2-a25a-483e-aae6-39c045a0b8a1";
inline constexpr char kAskGuid[] = "4ab7b379-bbac-4fe4-a02f-05aef327c782";  // ASK or ASVK
inline constexpr char kArkGuid[] = "c0b406a4-a803-4952-9743-3fb6014cd0ae";
// INVALID_ARGUMENT for a table that runs past its buffer or points into its own header.
// Entries with unknown GUIDs are skipped. An empty buffer is an empty table.
Result<CertTable> ParseCertTable(std::span<const uint8_t> table);
// The inverse, for tests and fakes.
Bytes MakeCertTable(const CertTable& certs);
// "63da758d-..." -> its 16 bytes.
std::array<uint8_t, 16> GuidBytes(std::string_view guid);

}  // namespace berth::snp
