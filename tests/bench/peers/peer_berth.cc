// berth's side of tests/bench/peers: the verifications berthd runs, in-process, on the case
// list that every peer's driver reads (gen_cases.py says its format), printing one line per
// case in the drivers' common format (driver_common.md):
//
//   RESULT <TAB> berth <TAB> case <TAB> kind <TAB> valid|invalid <TAB> ops/s <TAB> iterations <TAB> reason
//
//   peer_berth CASES [--seconds S] [--iters N] [--kind K] [--case ID]
//
// Each case's files are read once; every iteration then does all the work from those bytes,
// as berthd does for a request:
//   quote:    the AK (TPMT_PUBLIC: ParsePublic, CheckAttestationKeyAttributes, PublicToEvp;
//             or a PEM key), then tpm::VerifyQuote (signature, magic and type, extraData,
//             pcrDigest over the given PCR values);
//   eventlog: verify::CheckQuotedBoot with no policy: ParseEventLog, replay equal to the given
//             PCRs, event data that must match its digest does;
//   akcert:   what berthd's AK-certificate trust runs (server/tpm_identity.cc): the DER
//             certificates parsed, tpm::VerifyTpmCertChain (leaf through the intermediates to
//             the trusted root, at the case's time), the leaf's key equal to the AK
//             (tpm::CheckCertKeyMatches against the TPMT_PUBLIC, or the SPKI against a PEM key);
//   snp:      verify::VerifySnpReportOffline: ARK pinned and self-signed, ARK -> ASK -> VCEK,
//             validity at the case's time, the report's signature, the VCEK's TCB and hwID
//             against the report.
#include <chrono>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <iostream>
#include <map>
#include <optional>
#include <sstream>
#include <string>
#include <vector>

#include "common/bytes.h"
#include "common/crypto.h"
#include "common/tpm/eventlog.h"
#include "common/snp/report.h"
#include "common/status.h"
#include "common/tpm/certs.h"
#include "common/tpm/quote.h"
#include "verify/snp_verifier.h"
#include "verify/tpm_boot.h"

namespace berth::peers {
namespace {

using Case = std::map<std::string, std::string>;

std::vector<Case> ReadCases(const std::string& path) {
  std::vector<Case> cases;
  std::ifstream in(path);
  std::string line;
  while (std::getline(in, line)) {
    if (line.empty() || line[0] == '#') continue;
    std::istringstream fields(line);
    Case c;
    std::string f;
    fields >> c["id"];
    while (fields >> f) {
      size_t eq = f.find('=');
      if (eq != std::string::npos) c[f.substr(0, eq)] = f.substr(eq + 1);
    }
    cases.push_back(std::move(c));
  }
  return cases;
}

std::string Get(const Case& c, const std::string& key) {
  auto it = c.find(key);
  return it == c.end() ? std::string() : it->second;
}

Result<std::string> Read(const Case& c, const std::string& key) {
  const std::string path = Get(c, key);
  if (path.empty() || path == "-") return std::string();
  return ReadFile(path, 16 << 20);
}

// `BANK INDEX HEX` lines.
Result<tpm::PcrValues> ParsePcrs(const std::string& text) {
  tpm::PcrValues out;
  std::istringstream in(text);
  std::string bank, hex;
  uint32_t index;
  while (in >> bank >> index >> hex) {
    BERTH_ASSIGN_OR_RETURN(DigestAlg alg, DigestFromName(bank));
    BERTH_ASSIGN_OR_RETURN(Bytes value, HexDecode(hex));
    out[alg][index] = std::move(value);
  }
  return out;
}

// One case: its inputs loaded, and the verification as a function of them.
class Verification {
 public:
  virtual ~Verification() = default;
  virtual Status Run() = 0;
};

class QuoteVerification : public Verification {
 public:
  static Result<std::unique_ptr<Verification>> Load(const Case& c) {
    auto v = std::make_unique<QuoteVerification>();
    BERTH_ASSIGN_OR_RETURN(v->ak_pem_, Read(c, "ak"));
    BERTH_ASSIGN_OR_RETURN(v->ak_public_, Read(c, "akpub"));
    BERTH_ASSIGN_OR_RETURN(v->quote_, Read(c, "quote"));
    BERTH_ASSIGN_OR_RETURN(v->sig_, Read(c, "sig"));
    BERTH_ASSIGN_OR_RETURN(std::string pcrs, Read(c, "pcrs"));
    BERTH_ASSIGN_OR_RETURN(v->pcrs_, ParsePcrs(pcrs));
    BERTH_ASSIGN_OR_RETURN(v->nonce_, HexDecode(Get(c, "nonce")));
    return std::unique_ptr<Verification>(std::move(v));
  }

  Status Run() override {
    EvpPkeyPtr key;
    if (!ak_public_.empty()) {  // berthd's path: the AK as the TPM gave it
      BERTH_ASSIGN_OR_RETURN(TPMT_PUBLIC pub, tpm::ParsePublic(AsBytes(ak_public_)));
      BERTH_RETURN_IF_ERROR(tpm::CheckAttestationKeyAttributes(pub));
      BERTH_ASSIGN_OR_RETURN(key, tpm::PublicToEvp(pub));
    } else {
      BERTH_ASSIGN_OR_RETURN(key, PublicKeyFromPem(ak_pem_));
    }
    auto verified = tpm::VerifyQuote(key.get(), AsBytes(quote_), AsBytes(sig_), pcrs_,
                                     std::span<const uint8_t>(nonce_));
    return verified.status();
  }

 private:
  std::string ak_pem_, ak_public_, quote_, sig_;
  tpm::PcrValues pcrs_;
  Bytes nonce_;
};

class EventLogVerification : public Verification {
 public:
  static Result<std::unique_ptr<Verification>> Load(const Case& c) {
    auto v = std::make_unique<EventLogVerification>();
    BERTH_ASSIGN_OR_RETURN(v->log_, Read(c, "log"));
    BERTH_ASSIGN_OR_RETURN(std::string pcrs, Read(c, "pcrs"));
    BERTH_ASSIGN_OR_RETURN(v->quote_.pcrs, ParsePcrs(pcrs));
    return std::unique_ptr<Verification>(std::move(v));
  }

  Status Run() override {
    // The PCR values stand for a verified quote's (the quote kind measures that part).
    auto boot = verify::CheckQuotedBoot(quote_, AsBytes(log_), nullptr);
    return boot.status();
  }

 private:
  std::string log_;
  tpm::VerifiedQuote quote_;
};

class AkCertVerification : public Verification {
 public:
  static Result<std::unique_ptr<Verification>> Load(const Case& c) {
    auto v = std::make_unique<AkCertVerification>();
    BERTH_ASSIGN_OR_RETURN(v->leaf_, Read(c, "leaf"));
    BERTH_ASSIGN_OR_RETURN(v->root_, Read(c, "root"));
    std::istringstream inter(Get(c, "inter"));
    std::string path;
    while (std::getline(inter, path, ',')) {
      if (path.empty()) continue;
      BERTH_ASSIGN_OR_RETURN(std::string der, ReadFile(path));
      v->inter_.push_back(std::move(der));
    }
    BERTH_ASSIGN_OR_RETURN(v->ak_pem_, Read(c, "ak"));
    BERTH_ASSIGN_OR_RETURN(v->ak_public_, Read(c, "akpub"));
    v->at_ = std::stoll(Get(c, "at"));
    return std::unique_ptr<Verification>(std::move(v));
  }

  Status Run() override {
    BERTH_ASSIGN_OR_RETURN(std::vector<X509Ptr> leaf, tpm::CertsFromDerList({leaf_}));
    BERTH_ASSIGN_OR_RETURN(std::vector<X509Ptr> inter, tpm::CertsFromDerList(inter_));
    BERTH_ASSIGN_OR_RETURN(std::vector<X509Ptr> root, tpm::CertsFromDerList({root_}));
    std::vector<X509*> inter_raw;
    for (auto& c : inter) inter_raw.push_back(c.get());
    BERTH_RETURN_IF_ERROR(
        tpm::VerifyTpmCertChain(leaf[0].get(), inter_raw, {root[0].get()}, at_).status());
    if (!ak_public_.empty()) {
      BERTH_ASSIGN_OR_RETURN(TPMT_PUBLIC pub, tpm::ParsePublic(AsBytes(ak_public_)));
      return tpm::CheckCertKeyMatches(leaf[0].get(), pub, "the AK certificate");
    }
    BERTH_ASSIGN_OR_RETURN(EvpPkeyPtr ak, PublicKeyFromPem(ak_pem_));
    BERTH_ASSIGN_OR_RETURN(Bytes want, PublicKeyToSpkiDer(ak.get()));
    EVP_PKEY* cert_key = X509_get0_pubkey(leaf[0].get());
    if (cert_key == nullptr) return PermissionDenied("the AK certificate has no usable key");
    BERTH_ASSIGN_OR_RETURN(Bytes got, PublicKeyToSpkiDer(cert_key));
    if (got != want) return PermissionDenied("the AK certificate's key is not the AK");
    return OkStatus();
  }

 private:
  std::string leaf_, root_, ak_pem_, ak_public_;
  std::vector<std::string> inter_;
  int64_t at_ = 0;
};

class SnpVerification : public Verification {
 public:
  static Result<std::unique_ptr<Verification>> Load(const Case& c,
                                                    const verify::SnpTrustAnchors* anchors) {
    auto v = std::make_unique<SnpVerification>();
    v->anchors_ = anchors;
    BERTH_ASSIGN_OR_RETURN(std::string report, Read(c, "report"));
    v->in_.report = ToBytes(report);
    BERTH_ASSIGN_OR_RETURN(std::string vcek, Read(c, "vcek"));
    v->in_.leaf_der = ToBytes(vcek);
    BERTH_ASSIGN_OR_RETURN(std::string ask, Read(c, "ask"));
    v->in_.intermediate_der = ToBytes(ask);
    BERTH_ASSIGN_OR_RETURN(std::string ark, Read(c, "ark"));
    v->in_.ark_der = ToBytes(ark);
    v->in_.at_unix = std::stoll(Get(c, "at"));
    return std::unique_ptr<Verification>(std::move(v));
  }

  Status Run() override { return verify::VerifySnpReportOffline(in_, *anchors_).status(); }

 private:
  const verify::SnpTrustAnchors* anchors_ = nullptr;
  verify::SnpOfflineInput in_;
};

std::string OneLine(std::string s) {
  for (char& ch : s) {
    if (ch == '\t' || ch == '\n' || ch == '\r') ch = ' ';
  }
  return s;
}

int Main(int argc, char** argv) {
  if (argc < 2) {
    std::fprintf(stderr, "usage: peer_berth CASES [--seconds S] [--iters N] [--kind K] [--case ID]\n");
    return 2;
  }
  double seconds = 0;
  long iters = 0;
  std::string kind_filter, case_filter;
  for (int i = 2; i + 1 < argc; i += 2) {
    std::string flag = argv[i];
    if (flag == "--seconds") seconds = std::stod(argv[i + 1]);
    else if (flag == "--iters") iters = std::stol(argv[i + 1]);
    else if (flag == "--kind") kind_filter = argv[i + 1];
    else if (flag == "--case") case_filter = argv[i + 1];
    else {
      std::fprintf(stderr, "peer_berth: unknown flag %s\n", flag.c_str());
      return 2;
    }
  }
  auto anchors = verify::SnpTrustAnchors::Amd();
  if (!anchors.ok()) {
    std::fprintf(stderr, "peer_berth: AMD roots: %s\n", anchors.status().ToString().c_str());
    return 1;
  }
  for (const Case& c : ReadCases(argv[1])) {
    const std::string kind = Get(c, "kind");
    if (!kind_filter.empty() && kind != kind_filter) continue;
    if (!case_filter.empty() && Get(c, "id") != case_filter) continue;
    Result<std::unique_ptr<Verification>> v = InvalidArgument("unknown kind " + kind);
    if (kind == "quote") v = QuoteVerification::Load(c);
    else if (kind == "eventlog") v = EventLogVerification::Load(c);
    else if (kind == "snp") v = SnpVerification::Load(c, &*anchors);
    else if (kind == "akcert") v = AkCertVerification::Load(c);
    Status verdict = v.ok() ? (*v)->Run() : v.status();
    double ops = 0;
    long n = 0;
    if (v.ok() && (seconds > 0 || iters > 0)) {
      using Clock = std::chrono::steady_clock;
      const auto start = Clock::now();
      const auto until = start + std::chrono::duration<double>(seconds);
      do {
        (void)(*v)->Run();
        ++n;
      } while (iters > 0 ? n < iters : Clock::now() < until);
      ops = n / std::chrono::duration<double>(Clock::now() - start).count();
    }
    std::printf("RESULT\tberth\t%s\t%s\t%s\t%.1f\t%ld\t%s\n", Get(c, "id").c_str(), kind.c_str(),
                verdict.ok() ? "valid" : "invalid", ops, n,
                OneLine(verdict.ok() ? std::string("ok") : verdict.message()).c_str());
    std::fflush(stdout);
  }
  return 0;
}

}  // namespace
}  // namespace berth::peers

int main(int argc, char** argv) { return berth::peers::Main(argc, argv); }
