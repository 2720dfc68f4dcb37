// SEV-SNP parsing: report fields and layouts, TCB layouts per product, the extended report's
// certificate table, and the compiled-in AMD roots against independent copies.
#include "common/snp/report.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <filesystem>

#include "common/crypto.h"
#include "common/snp/amd_roots.h"
#include "tests/testing/testing.h"

namespace berth::snp {
namespace {

using ::berth::testing::Testdata;

TEST(SnpReportTest, ParsesTheCmcReportField_by_field) {
  if (!std::filesystem::exists(Testdata("snp-cmc-milan"))) {
    GTEST_FAIL() << "the real attestation testdata is not at " << berth::testing::TestdataDir();
  }
  auto r = ParseReport(AsBytes(berth::testing::MustRead(Testdata("snp-cmc-milan/report.bin"))));
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(r->version, 2u);
  EXPECT_EQ(r->policy, 0x30000u);
  EXPECT_FALSE(r->debug());
  EXPECT_EQ(r->vmpl, 0u);
  EXPECT_EQ(r->signing_key, SigningKey::kVcek);
  EXPECT_FALSE(r->mask_chip_key);
  EXPECT_EQ(r->report_data, (std::array<uint8_t, 64>{[] {
              std::array<uint8_t, 64> a;
              a.fill(0x23);
              return a;
            }()}));
  EXPECT_EQ(r->reported_tcb, 0x4306000000000002u);
  EXPECT_EQ(r->current_tcb, 0x4306000000000002u);
  EXPECT_EQ(DecodeTcb(r->reported_tcb, Product::kMilan),
            (Tcb{.bootloader = 2, .tee = 0, .snp = 6, .microcode = 67}));
  EXPECT_EQ(r->current_major, 1);
  EXPECT_EQ(r->current_minor, 51);
  EXPECT_EQ(r->current_build, 3);
  EXPECT_EQ(r->product(), Product::kUnknown);  // version 2 names no product
  EXPECT_FALSE(r->signature_high_nonzero);
  EXPECT_EQ(HexEncode(r->signature_r).substr(0, 8), "6b0492b9");  // little-endian reversed
}

Bytes MinimalReport(uint32_t version) {
  Bytes r(kReportSize, 0);
  r[0] = static_cast<uint8_t>(version);
  r[0x34] = 1;
  return r;
}

TEST(SnpReportTest, RefusesMalformedReportsNamingTheField) {
  EXPECT_EQ(ParseReport(Bytes(100)).status().message(),
            "SEV-SNP report is 100 bytes, expected 1184");
  EXPECT_EQ(ParseReport(MinimalReport(1)).status().message(),
            "SEV-SNP report version 1 is not supported (2 or later)");
  Bytes r = MinimalReport(2);
  r[0x34] = 2;
  EXPECT_EQ(ParseReport(r).status().message(),
            "SEV-SNP report signature algorithm 2 is not ECDSA P-384 with SHA-384 (1)");
  r = MinimalReport(2);
  r[0x48] = 3 << 2;
  EXPECT_EQ(ParseReport(r).status().message(), "SEV-SNP report SIGNING_KEY 3 is reserved");
  r = MinimalReport(2);
  r[0x2A0 + 60] = 1;  // above the 48 bytes of R
  EXPECT_TRUE(ParseReport(r)->signature_high_nonzero);
}

TEST(SnpReportTest, ProductFromCpuidOfVersion3Reports) {
  Bytes r = MinimalReport(3);
  auto product = [&](uint8_t family, uint8_t model) {
    r[0x188] = family;
    r[0x189] = model;
    return ParseReport(r)->product();
  };
  EXPECT_EQ(product(0x19, 0x01), Product::kMilan);
  EXPECT_EQ(product(0x19, 0x11), Product::kGenoa);
  EXPECT_EQ(product(0x19, 0xa0), Product::kGenoa);  // Bergamo/Siena: Genoa's keys
  EXPECT_EQ(product(0x1a, 0x02), Product::kTurin);
  EXPECT_EQ(product(0x17, 0x31), Product::kUnknown);  // Rome: no SEV-SNP VCEKs here
  r[0] = 2;
  EXPECT_EQ(product(0x19, 0x01), Product::kUnknown);  // version 2 has no CPUID fields
}

TEST(SnpReportTest, TcbLayoutsDifferOnTurin) {
  // Milan/Genoa: bootloader byte 0, tee 1, snp 6, microcode 7.
  EXPECT_EQ(DecodeTcb(0x7308000000000003, Product::kGenoa),
            (Tcb{.bootloader = 3, .tee = 0, .snp = 8, .microcode = 115}));
  // Turin: fmc byte 0, bootloader 1, tee 2, snp 3, microcode 7.
  Tcb turin = DecodeTcb(0x4800000004030201, Product::kTurin);
  EXPECT_EQ(turin, (Tcb{.bootloader = 2, .tee = 3, .snp = 4, .microcode = 0x48, .fmc = 1}));
  EXPECT_EQ(EncodeTcb(turin, Product::kTurin), 0x4800000004030201u);
  EXPECT_EQ(turin.ToString(), "bootloader=2 tee=3 snp=4 microcode=72 fmc=1");
}

TEST(SnpReportTest, CertTableRoundTripAndMalformedTables) {
  CertTable in{.vcek = {1, 2, 3}, .ask = {4, 5}, .ark = {6}};
  Bytes table = MakeCertTable(in);
  // Header: three entries and the terminator, then the certificates.
  ASSERT_EQ(table.size(), 4 * 24 + 6u);
  EXPECT_EQ(HexEncode(Bytes(table.begin(), table.begin() + 16)),
            "63da758de6644564adc5f4b93be8accd");  // the VCEK GUID in RFC 4122 byte order
  auto out = ParseCertTable(table);
  ASSERT_TRUE(out.ok());
  EXPECT_EQ(out->vcek, in.vcek);
  EXPECT_EQ(out->ask, in.ask);
  EXPECT_EQ(out->ark, in.ark);
  EXPECT_TRUE(out->vlek.empty());
  EXPECT_TRUE(ParseCertTable({})->vcek.empty());

  Bytes bad = table;
  bad[20] = 0xff;  // the VCEK's length runs past the table
  EXPECT_EQ(ParseCertTable(bad).status().code(), Code::kInvalidArgument);
  EXPECT_EQ(ParseCertTable(Bytes(table.begin(), table.begin() + 30)).status().message(),
            "SEV-SNP certificate table has no terminating entry");
}

TEST(AmdRootsTest, CompiledInRootsAreAmdsAndPinned) {
  if (!std::filesystem::exists(Testdata("amd-roots"))) {
    GTEST_FAIL() << "the real attestation testdata is not at " << berth::testing::TestdataDir();
  }
  const std::pair<Product, std::string> products[] = {
      {Product::kMilan, "milan"}, {Product::kGenoa, "genoa"}, {Product::kTurin, "turin"}};
  for (const auto& [product, name] : products) {
    const AmdRoots* roots = AmdRootsFor(product);
    ASSERT_NE(roots, nullptr);
    for (const auto& [pem, file] : {std::pair{roots->ark_pem, "ark_"},
                                    {roots->ask_pem, "ask_"},
                                    {roots->asvk_pem, "asvk_"}}) {
      auto ours = CertFromPem(pem);
      auto theirs = CertFromPem(
          berth::testing::MustRead(Testdata("amd-roots/" + std::string(file) + name + ".pem")));
      ASSERT_TRUE(ours.ok() && theirs.ok()) << file << name;
      EXPECT_EQ(*CertToDer(ours->get()), *CertToDer(theirs->get())) << file << name;
    }
    auto ark = CertFromPem(roots->ark_pem);
    EXPECT_EQ(HexEncode(Sha256(*CertToDer(ark->get()))), roots->ark_sha256_hex) << name;
  }
  EXPECT_EQ(AmdRootsFor(Product::kMilan)->ark_sha256_hex,
            "69d063b45344d26a2e94e1f4210de49ef555308287d4c174445c95639a540bcd");
  EXPECT_EQ(AmdRootsFor(Product::kGenoa)->ark_sha256_hex,
            "4c6598d19c18719c5dfd4a7d335f674e5bfe1d8f800cea2cf270c10d103db2f1");
  EXPECT_EQ(AmdRootsFor(Product::kTurin)->ark_sha256_hex,
            "1f084161a44bb6d93778a904877d4819cafa5d05ef4193b2ded9dd9c73dd3f6a");
  EXPECT_EQ(AmdRootsFor(Product::kUnknown), nullptr);
}

}  // namespace
}  // namespace berth::snp
