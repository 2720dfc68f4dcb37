#include "common/snp/report.h"

#include <openssl/asn1.h>
#include <openssl/objects.h>
#include <openssl/x509v3.h>

#include <algorithm>
#include <cctype>
#include <cstring>

#include "common/crypto.h"

namespace berth::snp {

namespace {

uint32_t U32(std::span<const uint8_t> d, size_t off) {
  return uint32_t{d[off]} | uint32_t{d[off + 1]} << 8 | uint32_t{d[off + 2]} << 16 |
         uint32_t{d[off + 3]} << 24;
}
uint64_t U64(std::span<const uint8_t> d, size_t off) {
  return uint64_t{U32(d, off)} | uint64_t{U32(d, off + 4)} << 32;
}
template <size_t N>
void Copy(std::array<uint8_t, N>& out, std::span<const uint8_t> d, size_t off) {
  std::memcpy(out.data(), d.data() + off, N);
}

// A little-endian 72-byte signature component -> big-endian 48 bytes.
bool ComponentFromLe(std::span<const uint8_t> le72, std::array<uint8_t, 48>& out) {
  for (size_t i = 0; i < 48; ++i) out[47 - i] = le72[i];
  return std::any_of(le72.begin() + 48, le72.begin() + 72, [](uint8_t b) { return b != 0; });
}

std::string OidText(const ASN1_OBJECT* obj) {
  char buf[128];
  int n = OBJ_obj2txt(buf, sizeof buf, obj, /*no_name=*/1);
  return n > 0 ? std::string(buf, static_cast<size_t>(std::min<int>(n, sizeof buf - 1))) : "";
}

constexpr std::string_view kAmdOidPrefix = "1.3.6.1.4.1.3704.1.";

}  // namespace

std::string_view ProductName(Product p) {
  switch (p) {
    case Product::kMilan:
      return "Milan";
    case Product::kGenoa:
      return "Genoa";
    case Product::kTurin:
      return "Turin";
    case Product::kUnknown:
      break;
  }
  return "unknown";
}

Product ProductFromName(std::string_view name) {
  std::string base(name.substr(0, name.find('-')));
  for (char& c : base) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  if (base == "milan") return Product::kMilan;
  if (base == "genoa") return Product::kGenoa;
  if (base == "turin") return Product::kTurin;
  return Product::kUnknown;
}

namespace {
struct NamedBit {
  const char* name;
  int bit;
};
constexpr NamedBit kPolicyBits[] = {
    {"smt", kPolicySmtBit},
    {"migrate_ma", kPolicyMigrateMaBit},
    {"debug", kPolicyDebugBit},
    {"single_socket", kPolicySingleSocketBit},
    {"cxl_allow", kPolicyCxlAllowBit},
    {"mem_aes_256_xts", kPolicyMemAes256XtsBit},
    {"rapl_dis", kPolicyRaplDisBit},
    {"ciphertext_hiding", kPolicyCiphertextHidingBit},
    {"page_swap_disable", kPolicyPageSwapDisableBit},
};
}  // namespace

std::optional<int> PolicyBitFromName(std::string_view name) {
  for (const auto& b : kPolicyBits) {
    if (name == b.name) return b.bit;
  }
  return std::nullopt;
}

std::string PolicyBitName(int bit) {
  for (const auto& b : kPolicyBits) {
    if (bit == b.bit) return b.name;
  }
  return "bit" + std::to_string(bit);
}

std::string Tcb::ToString() const {
  std::string out = "bootloader=" + std::to_string(bootloader) + " tee=" + std::to_string(tee) +
                    " snp=" + std::to_string(snp) + " microcode=" + std::to_string(microcode);
  if (fmc) out += " fmc=" + std::to_string(*fmc);
  return out;
}

Tcb DecodeTcb(uint64_t raw, Product product) {
  auto byte = [raw](int i) { return static_cast<uint8_t>(raw >> (8 * i)); };
  Tcb t;
  if (product == Product::kTurin) {
    t.fmc = byte(0);
    t.bootloader = byte(1);
    t.tee = byte(2);
    t.snp = byte(3);
  } else {
    t.bootloader = byte(0);
    t.tee = byte(1);
    t.snp = byte(6);
  }
  t.microcode = byte(7);
  return t;
}

uint64_t EncodeTcb(const Tcb& t, Product product) {
  auto at = [](uint8_t v, int i) { return uint64_t{v} << (8 * i); };
  if (product == Product::kTurin) {
    return at(t.fmc.value_or(0), 0) | at(t.bootloader, 1) | at(t.tee, 2) | at(t.snp, 3) |
           at(t.microcode, 7);
  }
  return at(t.bootloader, 0) | at(t.tee, 1) | at(t.snp, 6) | at(t.microcode, 7);
}

std::string_view SigningKeyName(SigningKey k) {
  switch (k) {
    case SigningKey::kVcek:
      return "VCEK";
    case SigningKey::kVlek:
      return "VLEK";
    case SigningKey::kNone:
      return "none";
  }
  return "?";
}

Product Report::product() const {
  if (version < 3) return Product::kUnknown;
  // CPUID_FAM_ID / CPUID_MOD_ID hold the combined family and model (CPUID Fn0000_0001_EAX).
  if (cpuid_family == 0x19) {
    if (cpuid_model <= 0x0f) return Product::kMilan;
    if (cpuid_model <= 0x1f || (cpuid_model >= 0xa0 && cpuid_model <= 0xaf)) return Product::kGenoa;
  }
  if (cpuid_family == 0x1a && cpuid_model <= 0x1f) return Product::kTurin;
  return Product::kUnknown;
}

Result<Report> ParseReport(std::span<const uint8_t> d) {
  if (d.size() != kReportSize) {
    return InvalidArgument("SEV-SNP report is " + std::to_string(d.size()) + " bytes, expected " +
                           std::to_string(kReportSize));
  }
  Report r;
  r.version = U32(d, 0x00);
  if (r.version < 2) {
    return InvalidArgument("SEV-SNP report version " + std::to_string(r.version) +
                           " is not supported (2 or later)");
  }
  r.guest_svn = U32(d, 0x04);
  r.policy = U64(d, 0x08);
  Copy(r.family_id, d, 0x10);
  Copy(r.image_id, d, 0x20);
  r.vmpl = U32(d, 0x30);
  r.signature_algo = U32(d, 0x34);
  if (r.signature_algo != kSignatureAlgoEcdsaP384Sha384) {
    return InvalidArgument("SEV-SNP report signature algorithm " +
                           std::to_string(r.signature_algo) +
                           " is not ECDSA P-384 with SHA-384 (1)");
  }
  r.current_tcb = U64(d, 0x38);
  r.platform_info = U64(d, 0x40);
  uint32_t key_info = U32(d, 0x48);
  r.author_key_en = key_info & 1;
  r.mask_chip_key = (key_info >> 1) & 1;
  uint32_t signing_key = (key_info >> 2) & 7;
  if (signing_key != 0 && signing_key != 1 && signing_key != 7) {
    return InvalidArgument("SEV-SNP report SIGNING_KEY " + std::to_string(signing_key) +
                           " is reserved");
  }
  r.signing_key = static_cast<SigningKey>(signing_key);
  Copy(r.report_data, d, 0x50);
  Copy(r.measurement, d, 0x90);
  Copy(r.host_data, d, 0xC0);
  Copy(r.id_key_digest, d, 0xE0);
  Copy(r.author_key_digest, d, 0x110);
  Copy(r.report_id, d, 0x140);
  Copy(r.report_id_ma, d, 0x160);
  r.reported_tcb = U64(d, 0x180);
  if (r.version >= 3) {
    r.cpuid_family = d[0x188];
    r.cpuid_model = d[0x189];
    r.cpuid_stepping = d[0x18A];
  }
  Copy(r.chip_id, d, 0x1A0);
  r.committed_tcb = U64(d, 0x1E0);
  r.current_build = d[0x1E8];
  r.current_minor = d[0x1E9];
  r.current_major = d[0x1EA];
  r.committed_build = d[0x1EC];
  r.committed_minor = d[0x1ED];
  r.committed_major = d[0x1EE];
  r.launch_tcb = U64(d, 0x1F0);
  bool high_r = ComponentFromLe(d.subspan(kSignatureOffset, 72), r.signature_r);
  bool high_s = ComponentFromLe(d.subspan(kSignatureOffset + 72, 72), r.signature_s);
  r.signature_high_nonzero = high_r || high_s;
  r.raw.assign(d.begin(), d.end());
  return r;
}

namespace {

// An AMD SPL extension: a DER INTEGER 0-255 inside the extension's OCTET STRING.
Result<uint8_t> SplValue(const ASN1_OCTET_STRING* data, const std::string& oid) {
  const unsigned char* p = ASN1_STRING_get0_data(data);
  int len = ASN1_STRING_length(data);
  const unsigned char* end = p + len;
  std::unique_ptr<ASN1_INTEGER, decltype(&ASN1_INTEGER_free)> value(
      d2i_ASN1_INTEGER(nullptr, &p, len), ASN1_INTEGER_free);
  int64_t v = -1;
  if (!value || p != end || ASN1_INTEGER_get_int64(&v, value.get()) != 1 || v < 0 || v > 255) {
    return InvalidArgument("certificate extension " + oid + " is not an INTEGER 0-255");
  }
  return static_cast<uint8_t>(v);
}

std::string StringValue(const ASN1_OCTET_STRING* data) {
  const unsigned char* p = ASN1_STRING_get0_data(data);
  int len = ASN1_STRING_length(data);
  const unsigned char* start = p;
  // KDS writes IA5String (productName, cspId); accept any DER string type, else the raw bytes.
  std::unique_ptr<ASN1_STRING, decltype(&ASN1_STRING_free)> s(d2i_ASN1_PRINTABLE(nullptr, &p, len),
                                                              ASN1_STRING_free);
  if (s && p == start + len) {
    return std::string(reinterpret_cast<const char*>(ASN1_STRING_get0_data(s.get())),
                       static_cast<size_t>(ASN1_STRING_length(s.get())));
  }
  return std::string(reinterpret_cast<const char*>(start), static_cast<size_t>(len));
}

}  // namespace

Result<EndorsementKeyInfo> ParseEndorsementKeyInfo(X509* cert) {
  EndorsementKeyInfo info;
  bool bl = false, tee = false, snp = false, ucode = false;
  for (int i = 0; i < X509_get_ext_count(cert); ++i) {
    X509_EXTENSION* ext = X509_get_ext(cert, i);
    std::string oid = OidText(X509_EXTENSION_get_object(ext));
    if (!oid.starts_with(kAmdOidPrefix)) continue;
    const ASN1_OCTET_STRING* data = X509_EXTENSION_get_data(ext);
    std::string_view rest = std::string_view(oid).substr(kAmdOidPrefix.size());
    if (rest == "2") {
      info.product_name = StringValue(data);
    } else if (rest == "4") {
      const unsigned char* p = ASN1_STRING_get0_data(data);
      info.hwid.assign(p, p + ASN1_STRING_length(data));
    } else if (rest == "5") {
      info.csp_id = StringValue(data);
    } else if (rest == "3.1") {
      BERTH_ASSIGN_OR_RETURN(info.tcb.bootloader, SplValue(data, oid));
      bl = true;
    } else if (rest == "3.2") {
      BERTH_ASSIGN_OR_RETURN(info.tcb.tee, SplValue(data, oid));
      tee = true;
    } else if (rest == "3.3") {
      BERTH_ASSIGN_OR_RETURN(info.tcb.snp, SplValue(data, oid));
      snp = true;
    } else if (rest == "3.8") {
      BERTH_ASSIGN_OR_RETURN(info.tcb.microcode, SplValue(data, oid));
      ucode = true;
    } else if (rest == "3.9") {
      BERTH_ASSIGN_OR_RETURN(uint8_t fmc, SplValue(data, oid));
      info.tcb.fmc = fmc;
    }
  }
  info.has_tcb = bl && tee && snp && ucode;
  return info;
}

Result<Bytes> CertificateToDer(std::string_view pem_or_der) {
  if (pem_or_der.find("-----BEGIN CERTIFICATE-----") != std::string_view::npos) {
    BERTH_ASSIGN_OR_RETURN(X509Ptr cert, CertFromPem(pem_or_der));
    return CertToDer(cert.get());
  }
  BERTH_ASSIGN_OR_RETURN(X509Ptr cert, CertFromDer(AsBytes(pem_or_der)));
  return Bytes(pem_or_der.begin(), pem_or_der.end());
}

std::array<uint8_t, 16> GuidBytes(std::string_view guid) {
  std::array<uint8_t, 16> out{};
  std::string hex;
  for (char c : guid) {
    if (c != '-') hex.push_back(c);
  }
  auto bytes = HexDecode(hex);
  if (bytes.ok() && bytes->size() == 16) std::copy(bytes->begin(), bytes->end(), out.begin());
  return out;
}

namespace {
constexpr size_t kCertEntrySize = 24;
}

Result<CertTable> ParseCertTable(std::span<const uint8_t> table) {
  CertTable out;
  if (table.empty()) return out;
  const auto vcek = GuidBytes(kVcekGuid), vlek = GuidBytes(kVlekGuid), ask = GuidBytes(kAskGuid),
             ark = GuidBytes(kArkGuid);
  struct Entry {
    std::array<uint8_t, 16> guid;
    uint32_t offset, length;
  };
  std::vector<Entry> entries;
  size_t pos = 0;
  for (;;) {
    if (pos + kCertEntrySize > table.size()) {
      return InvalidArgument("SEV-SNP certificate table has no terminating entry");
    }
    Entry e;
    std::memcpy(e.guid.data(), table.data() + pos, 16);
    e.offset = U32(table, pos + 16);
    e.length = U32(table, pos + 20);
    pos += kCertEntrySize;
    bool zero_guid = std::all_of(e.guid.begin(), e.guid.end(), [](uint8_t b) { return b == 0; });
    if (zero_guid && e.offset == 0 && e.length == 0) break;
    entries.push_back(e);
  }
  for (const Entry& e : entries) {
    if (e.offset < pos || uint64_t{e.offset} + e.length > table.size()) {
      return InvalidArgument("SEV-SNP certificate table entry points outside the table (offset " +
                             std::to_string(e.offset) + ", length " + std::to_string(e.length) +
                             ")");
    }
    Bytes cert(table.begin() + e.offset, table.begin() + e.offset + e.length);
    if (e.guid == vcek)
      out.vcek = std::move(cert);
    else if (e.guid == vlek)
      out.vlek = std::move(cert);
    else if (e.guid == ask)
      out.ask = std::move(cert);
    else if (e.guid == ark)
      out.ark = std::move(cert);
  }
  return out;
}

Bytes MakeCertTable(const CertTable& certs) {
  std::vector<std::pair<const char*, const Bytes*>> present;
  if (!certs.vcek.empty()) present.emplace_back(kVcekGuid, &certs.vcek);
  if (!certs.vlek.empty()) present.emplace_back(kVlekGuid, &certs.vlek);
  if (!certs.ask.empty()) present.emplace_back(kAskGuid, &certs.ask);
  if (!certs.ark.empty()) present.emplace_back(kArkGuid, &certs.ark);
  size_t header = (present.size() + 1) * kCertEntrySize;
  Bytes out(header, 0);
  size_t cursor = header;
  for (size_t i = 0; i < present.size(); ++i) {
    auto guid = GuidBytes(present[i].first);
    uint8_t* entry = out.data() + i * kCertEntrySize;
    std::memcpy(entry, guid.data(), 16);
    uint32_t off = static_cast<uint32_t>(cursor),
             len = static_cast<uint32_t>(present[i].second->size());
    for (int b = 0; b < 4; ++b) {
      entry[16 + b] = static_cast<uint8_t>(off >> (8 * b));
      entry[20 + b] = static_cast<uint8_t>(len >> (8 * b));
    }
    out.insert(out.end(), present[i].second->begin(), present[i].second->end());
    cursor += len;
  }
  return out;
}

}  // namespace berth::snp
