#include "cli/enrolment_cmd.h"

#include <openssl/asn1.h>
#include <openssl/bio.h>
#include <openssl/x509.h>

#include <ctime>
#include <memory>

#include "cli/input.h"
#include "common/bytes.h"
#include "common/crypto.h"
#include "common/enrolment.h"
#include "common/time.h"
#include "common/tpm/quote.h"

namespace berth::cli {
namespace {

// A config is a few KiB; anything near this is not one.
constexpr size_t kMaxConfigSize = 1 << 20;

// The PEM of every certificate in `pem`, re-encoded: what an operator's CA file holds
// besides certificates (openssl's "Bag Attributes", comments) does not reach the ESP.
Result<std::string> NormaliseCaPem(std::string_view pem) {
  BERTH_ASSIGN_OR_RETURN(std::vector<X509Ptr> certs, CertsFromPem(pem));
  std::string out;
  for (const auto& cert : certs) {
    BERTH_ASSIGN_OR_RETURN(std::string one, CertToPem(cert.get()));
    out += one;
  }
  return out;
}

std::string SubjectOf(X509* cert) {
  std::unique_ptr<BIO, decltype(&BIO_free)> bio(BIO_new(BIO_s_mem()), BIO_free);
  if (!bio || X509_NAME_print_ex(bio.get(), X509_get_subject_name(cert), 0, XN_FLAG_RFC2253) < 0) {
    return "?";
  }
  char* p = nullptr;
  long n = BIO_get_mem_data(bio.get(), &p);
  return std::string(p, static_cast<size_t>(n));
}

std::string NotAfterOf(X509* cert) {
  auto unix = Asn1TimeUnix(X509_get0_notAfter(cert));
  return unix.ok() ? Rfc3339(*unix) : "?";
}

}  // namespace

int EnrolmentWrite(const EnrolmentWriteOptions& o, Context& ctx) {
  auto text = ReadInputFile("--in", o.in, kMaxConfigSize);
  if (!text.ok()) return ExitFor(ctx, text.status());
  auto config = ParseEnrolmentTextUnvalidated(*text);
  if (!config.ok()) return ExitFor(ctx, BadInput("--in " + o.in, config.status()));

  if (!o.cluster_ca.empty()) {
    auto ca = ReadInputFile("--cluster-ca", o.cluster_ca, kMaxConfigSize);
    if (!ca.ok()) return ExitFor(ctx, ca.status());
    auto pem = NormaliseCaPem(*ca);
    if (!pem.ok()) return ExitFor(ctx, BadInput("--cluster-ca " + o.cluster_ca, pem.status()));
    config->set_cluster_ca_pem(*pem);
  }

  Status valid = ValidateEnrolmentConfig(*config);
  if (!valid.ok()) return ExitFor(ctx, BadInput("--in " + o.in, valid));

  std::string binary;
  if (!config->SerializeToString(&binary)) {
    return ExitFor(ctx, Internal("serialising the EnrolmentConfig failed"));
  }
  // 0644: the file holds no secret, and the ESP (FAT) has no modes anyway.
  Status written = WriteFileAtomic(o.out, binary, 0644);
  if (!written.ok()) return ExitFor(ctx, BadInput("--out", written));
  *ctx.out << "wrote " << o.out << " (" << binary.size() << " bytes)\n";
  return kExitOk;
}

int EnrolmentShow(const std::string& path, Context& ctx) {
  auto config = ReadEnrolmentConfigUnvalidated(path);
  // The messages name the file already; the code must read as bad input (EACCES included).
  if (!config.ok()) return ExitFor(ctx, InvalidArgument(config.status().message()));
  *ctx.out << EnrolmentToText(*config);
  if (auto certs = CertsFromPem(config->cluster_ca_pem()); certs.ok()) {
    for (const auto& cert : *certs) {
      auto spki = CertSpkiSha256(cert.get());
      *ctx.out << "# cluster CA: " << SubjectOf(cert.get()) << ", expires "
               << NotAfterOf(cert.get()) << ", sha256:" << (spki.ok() ? HexEncode(*spki) : "?")
               << "\n";
    }
  }
  if (config->pcr_selection().empty()) {
    // The agent's default is what the node will quote, so the policy must match it.
    std::string pcrs;
    for (const auto& s : DefaultPcrSelection()) {
      auto bank = tpm::DigestFromTpmAlg(static_cast<uint16_t>(s.bank()));
      pcrs += std::string(pcrs.empty() ? "" : "; ") +
              std::string(bank.ok() ? DigestName(*bank) : "?") + " PCRs ";
      for (int i = 0; i < s.pcrs_size(); ++i) pcrs += (i ? "," : "") + std::to_string(s.pcrs(i));
    }
    *ctx.out << "# pcr_selection absent: the agent quotes " << pcrs << "\n";
  }
  Status valid = ValidateEnrolmentConfig(*config);
  if (!valid.ok()) {
    *ctx.out << "# invalid: " << valid.message() << "\n";
    return ExitFor(ctx,
                   PermissionDenied(path + " is not a valid EnrolmentConfig: " + valid.message()));
  }
  *ctx.out << "# valid\n";
  return kExitOk;
}

void AddEnrolmentCommands(CLI::App& app, Context& ctx) {
  CLI::App* group = Group(app, "enrolment", "EnrolmentConfigs: the file on a node's ESP");

  auto write_options = std::make_shared<EnrolmentWriteOptions>();
  CLI::App* write = group->add_subcommand(
      "write", "Validate a text-format EnrolmentConfig and write the binary file the ESP holds");
  write->add_option("--in", write_options->in, "EnrolmentConfig in protobuf text format")
      ->type_name("FILE")
      ->required();
  write
      ->add_option("--out", write_options->out,
                   "binary EnrolmentConfig to write (e.g. /efi/berth/enrolment.binpb); replaced "
                   "atomically, left untouched when the input is invalid")
      ->type_name("FILE")
      ->required();
  write
      ->add_option("--cluster-ca", write_options->cluster_ca,
                   "PEM file of the CA that pins berthd's TLS certificate; replaces "
                   "cluster_ca_pem from --in")
      ->type_name("FILE");
  write->footer(
      "Example --in:\n"
      "  version: 1\n"
      "  cluster_id: \"prod-eu1\"\n"
      "  endpoints: \"10.0.0.10:7443\"\n"
      "  endpoints: \"10.0.0.11:7443\"\n"
      "  role: NODE_ROLE_WORKER\n"
      "  attestation: ATTESTATION_KIND_TPM\n"
      "  pcr_selection { bank: HASH_ALGORITHM_SHA256 pcrs: [0, 2, 4, 7, 9, 14] }\n"
      "  state_disk { device: \"/dev/vdb\" mount_point: \"/var/lib/berth/state\" }\n"
      "with --cluster-ca ca.pem, or cluster_ca_pem: \"-----BEGIN CERTIFICATE-----\\n...\".\n"
      "Exit 0 written; 2 unreadable or invalid input (the message names the line or field).");
  write->callback([write_options, &ctx] { ctx.exit_code = EnrolmentWrite(*write_options, ctx); });

  auto show_path = std::make_shared<std::string>();
  CLI::App* show = group->add_subcommand(
      "show", "Print a binary EnrolmentConfig as text format and say whether it is valid");
  show->add_option("file", *show_path, "binary EnrolmentConfig")->type_name("FILE")->required();
  show->footer(
      "The output can be edited and fed back to `enrolment write`. Exit 0 valid; 1 it parses "
      "but fails validation (the agent would refuse it); 2 missing, unreadable or corrupt.");
  show->callback([show_path, &ctx] { ctx.exit_code = EnrolmentShow(*show_path, ctx); });
}

}  // namespace berth::cli
