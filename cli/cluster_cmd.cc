// berthctl's operator commands for control planes that wait for their operator
// (docs/cluster-lifecycle.md):
//
//   berthctl operator key --out DIR
//       makes the operator's key and certificate (DIR/operator.key 0600, DIR/operator.pem) and
//       prints the SPKI SHA-256 that EnrolmentConfigs pin (operator_access.operator_spki_sha256)
//   berthctl cluster init --node HOST:PORT --policy FILE --cluster-id ID --out DIR
//                         [--recovery-shares N] [--recovery-threshold K]
//                         [--api-server-address ADDR]... [--control-plane-endpoint HOST:PORT]
//       the first control plane: attest it against FILE, make the recovery secret and its N
//       shares (any K recover) and write them, DIR/recovery-share-I-of-N (0600 each: hand one
//       to each operator, keep them offline) and DIR/recovery-key.txt, send the node the
//       cluster's parameters (no private key), write what it answers: DIR/admin.conf (0600),
//       DIR/join-ca.pem, DIR/kubernetes-ca.pem
//   berthctl recover --node HOST:PORT --policy FILE --share FILE [--share FILE]...
//       a control plane that cannot open its state disk: attest it against FILE first, then
//       combine the shares, open its recovery keyslot's box, send it the keyslot's key
// each with --operator-cert PEM --operator-key PEM.
//
// Exit codes: 0 done; 1 the node failed attestation or refused (or the shares do not combine);
// 2 bad flags or files, or the node unreachable. Nothing is sent to a node that fails.
#include <filesystem>
#include <memory>

#include "cli/commands.h"
#include "cli/operator_client.h"
#include "cli/recovery_shares.h"
#include "common/audit.h"
#include "common/bytes.h"
#include "common/crypto.h"
#include "common/enrolment.h"
#include "common/recovery.h"
#include "common/secret.h"
#include "common/tpm/quote.h"
#include "verify/policy.h"

namespace berth::cli {

namespace {

struct OperatorFlags {
  std::string node, cert, key, policy;
};

void AddOperatorFlags(CLI::App* cmd, OperatorFlags& f) {
  cmd->add_option("--node", f.node, "the node's operator endpoint, host:port (port 7443)")
      ->required();
  cmd->add_option("--operator-cert", f.cert, "your certificate (PEM)")->required();
  cmd->add_option("--operator-key", f.key, "your private key (PEM)")->required();
  cmd->add_option("--policy", f.policy,
                  "the policy the node's boot must satisfy (berthd's format; pin its AK)")
      ->required();
}

// Exit codes: refusals the node or the policy gave are 1, input and transport are 2.
int Exit(Context& ctx, const Status& st) {
  *ctx.err << st.message() << "\n";
  switch (st.code()) {
    case Code::kPermissionDenied:
    case Code::kFailedPrecondition:
    case Code::kAborted:
      return kExitCheckFailed;
    default:
      return kExitBadInput;
  }
}

// berthctl's own audit line of an operator command (common/audit.h), on stderr after what it
// said: the decision, made on this machine whether or not the node was sent anything.
void AuditCommand(Context& ctx, std::string_view call, const OperatorFlags& f, const Status& st,
                  std::string_view done) {
  *ctx.err << AuditLine(call)
                  .Add("node", f.node)
                  .Add("policy", f.policy)
                  .Format(st.ok() ? done : "refused", st)
           << "\n";
}

// Attests the node (nothing is sent before this succeeds).
Result<AttestedNode> Attest(Context& ctx, const OperatorFlags& f) {
  auto cert = ReadFile(f.cert);
  if (!cert.ok()) return InvalidArgument(cert.status().message());
  auto key = ReadSecretFile(f.key);
  if (!key.ok()) return InvalidArgument(key.status().message());
  auto policy = verify::LoadPolicy(f.policy);
  if (!policy.ok()) return InvalidArgument(policy.status().message());
  OperatorConnection connection{.node = f.node, .cert_pem = *cert, .key_pem = std::move(*key)};
  BERTH_ASSIGN_OR_RETURN(AttestedNode node, AttestedNode::Connect(connection, *policy));
  *ctx.out << "node " << node.attestation().node_name() << " at " << f.node
           << " attested: TLS key sha256:" << node.node_key_sha256().substr(0, 16)
           << "..., attestation key " << node.verified().ak_name << " (sha256:"
           << node.verified().ak_sha256_hex.substr(0, 16) << "...), " << node.verified().rule
           << "\n";
  return node;
}

Status WriteNew(const std::string& path, std::string_view data, mode_t mode) {
  if (std::filesystem::exists(path)) {
    return FailedPrecondition(path + " exists; refusing to overwrite it");
  }
  return WriteFileAtomic(path, data, mode);
}

Status ClusterInit(Context& ctx, const OperatorFlags& f, const std::string& cluster_id,
                   const std::string& out, int shares, int threshold,
                   const std::vector<std::string>& addresses, const std::string& endpoint) {
  if (!endpoint.empty() && !IsValidEndpoint(endpoint)) {
    return InvalidArgument("--control-plane-endpoint \"" + endpoint + "\" is not host:port");
  }
  // Refuse before anything happens if the output would clobber an earlier bootstrap's shares.
  BERTH_RETURN_IF_ERROR(MakeDirs(out, 0700));
  for (const auto& entry : std::filesystem::directory_iterator(out)) {
    return FailedPrecondition(out + " is not empty (" + entry.path().filename().string() +
                              "); cluster init writes a new cluster's secrets only there");
  }
  auto policy_text = ReadFile(f.policy);
  if (!policy_text.ok()) return InvalidArgument(policy_text.status().message());
  BERTH_ASSIGN_OR_RETURN(AttestedNode node, Attest(ctx, f));
  if (node.attestation().mode() != v1::OPERATOR_MODE_BOOTSTRAP) {
    return FailedPrecondition("the node is not waiting to bootstrap a cluster");
  }
  SecretBytes secret(RandomBytes(recovery::kSecretSize).data(), recovery::kSecretSize);
  BERTH_ASSIGN_OR_RETURN(Bytes public_key, recovery::PublicKeyOf(secret));
  BERTH_ASSIGN_OR_RETURN(std::vector<RecoveryShare> split,
                         SplitRecoverySecret(secret, cluster_id, threshold, shares));
  v1::BootstrapRequest request;
  request.set_cluster_id(cluster_id);
  request.set_recovery_public_key(ToString(public_key));
  request.set_policy_yaml(*policy_text);
  // The node signs its own boot over the policy's cold-start PCRs; berthd's parser reads them.
  auto policy = verify::ParsePolicy(*policy_text);
  if (!policy.ok()) return InvalidArgument(policy.status().message());
  request.mutable_cold_start()->set_bank(
      static_cast<v1::HashAlgorithm>(tpm::TpmAlgFromDigest(policy->roles.cold_start.bank)));
  for (uint32_t pcr : policy->roles.cold_start.pcrs) request.mutable_cold_start()->add_pcrs(pcr);
  for (const auto& a : addresses) request.add_api_server_addresses(a);
  request.set_control_plane_endpoint(endpoint);
  // The shares before the node is asked: it seals its disk's recovery keyslot to their key as
  // it formats, so an answer lost after that (a dropped connection, a timeout, a failure after
  // the disk was formatted) must not lose the only way to recover that disk. A request the node
  // refuses as invalid (before it changes anything) removes them again.
  std::vector<std::string> recovery_files;
  auto forget = [&] {
    std::error_code ignored;
    for (const auto& path : recovery_files) std::filesystem::remove(path, ignored);
  };
  Status kept = [&]() -> Status {
    for (const RecoveryShare& s : split) {
      const std::string path =
          out + "/recovery-share-" + std::to_string(s.index) + "-of-" + std::to_string(s.count);
      SecretBytes text = FormatShare(s);
      BERTH_RETURN_IF_ERROR(WriteNew(path, text.view(), 0600));
      recovery_files.push_back(path);
    }
    const std::string key_file = out + "/recovery-key.txt";
    BERTH_RETURN_IF_ERROR(WriteNew(key_file,
                                   "recovery-key-sha256: " + recovery::Fingerprint(public_key) +
                                       "\nrecovery-public-key: " + HexEncode(public_key) + "\n",
                                   0644));
    recovery_files.push_back(key_file);
    return OkStatus();
  }();
  if (!kept.ok()) {
    forget();
    return kept;
  }
  *ctx.out << "bootstrapping cluster " << cluster_id << " on " << node.attestation().node_name()
           << " (this takes minutes: the node formats its disk and starts the control plane)\n";
  auto answered = node.Bootstrap(std::move(request));
  if (!answered.ok() && answered.status().code() == Code::kInvalidArgument) {
    forget();
    return answered.status();
  }
  if (!answered.ok()) {
    return Status(answered.status().code(),
                  std::string(answered.status().message()) + "\nthe recovery shares and key in " +
                      out +
                      " are kept: the node may have sealed its disk to them. Keep them until "
                      "that disk is wiped; run cluster init again with another --out");
  }
  v1::BootstrapResponse made = std::move(*answered);
  std::string kubeconfig = made.admin_kubeconfig();
  Status written = WriteNew(out + "/admin.conf", kubeconfig, 0600);
  WipeString(kubeconfig);
  WipeString(*made.mutable_admin_kubeconfig());
  BERTH_RETURN_IF_ERROR(written);
  BERTH_RETURN_IF_ERROR(WriteNew(out + "/join-ca.pem", made.join_ca_pem(), 0644));
  BERTH_RETURN_IF_ERROR(WriteNew(out + "/kubernetes-ca.pem", made.kubernetes_ca_pem(), 0644));
  *ctx.out << "cluster " << cluster_id << " is up\n"
           << "  berthd:          " << made.berthd_endpoint() << "\n"
           << "  Kubernetes API:  " << made.api_server_endpoint() << "\n"
           << "  admin kubeconfig " << out << "/admin.conf\n"
           << "  join CA          " << out << "/join-ca.pem (EnrolmentConfigs pin it)\n"
           << "  recovery         " << shares << " shares, any " << threshold << " recover: "
           << out << "/recovery-share-*; hand one to each operator and keep them offline\n";
  return OkStatus();
}

Status Recover(Context& ctx, const OperatorFlags& f, const std::vector<std::string>& files) {
  // Every share readable before the node is asked anything.
  std::vector<RecoveryShare> shares;
  for (const auto& file : files) {
    auto text = ReadSecretFile(file);
    if (!text.ok()) return InvalidArgument(text.status().message());
    BERTH_ASSIGN_OR_RETURN(RecoveryShare s, ParseShare(text->view(), file));
    shares.push_back(std::move(s));
  }
  BERTH_ASSIGN_OR_RETURN(AttestedNode node, Attest(ctx, f));
  const v1::OperatorAttestResponse& a = node.attestation();
  if (a.mode() != v1::OPERATOR_MODE_RECOVERY) {
    return FailedPrecondition("the node is not waiting for a recovery");
  }
  *ctx.out << "node " << a.node_name() << " cannot open its state disk " << a.disk_uuid()
           << " by itself: " << a.reason() << "\n";
  if (!shares.empty() && a.recovery_key_sha256() != shares.front().recovery_key_sha256) {
    return FailedPrecondition("the node's recovery keyslot is sealed to recovery key " +
                              a.recovery_key_sha256().substr(0, 16) +
                              "..., not to the one these shares are of");
  }
  BERTH_ASSIGN_OR_RETURN(SecretBytes secret, CombineRecoveryShares(shares));
  BERTH_ASSIGN_OR_RETURN(SecretBytes key,
                         recovery::Open(secret, AsBytes(a.recovery_box()), AsBytes(a.disk_uuid())));
  BERTH_RETURN_IF_ERROR(node.Recover(key));
  *ctx.out << "node " << a.node_name() << " opened its state disk with the recovery keyslot\n";
  return OkStatus();
}

}  // namespace

void AddClusterCommands(CLI::App& app, Context& ctx) {
  CLI::App* op = Group(app, "operator", "your operator identity");
  auto key_out = std::make_shared<std::string>();
  CLI::App* key = op->add_subcommand("key", "make an operator key and certificate");
  key->add_option("--out", *key_out, "directory for operator.key and operator.pem")->required();
  key->callback([&ctx, key_out] {
    auto made = [&]() -> Result<std::string> {
      BERTH_RETURN_IF_ERROR(MakeDirs(*key_out, 0700));
      BERTH_ASSIGN_OR_RETURN(EvpPkeyPtr k, GenerateP256Key());
      BERTH_ASSIGN_OR_RETURN(
          X509Ptr cert, IssueCert({.common_name = "berth operator", .client_auth = true,
                                   .validity = std::chrono::hours(24 * 3650)},
                                  k.get(), nullptr, k.get()));
      BERTH_ASSIGN_OR_RETURN(SecretBytes pem, PrivateKeyToPem(k.get()));
      BERTH_RETURN_IF_ERROR(WriteNew(*key_out + "/operator.key", pem.view(), 0600));
      BERTH_ASSIGN_OR_RETURN(std::string cert_pem, CertToPem(cert.get()));
      BERTH_RETURN_IF_ERROR(WriteNew(*key_out + "/operator.pem", cert_pem, 0644));
      BERTH_ASSIGN_OR_RETURN(Bytes spki, PublicKeyToSpkiDer(k.get()));
      return HexEncode(Sha256(spki));
    }();
    if (!made.ok()) {
      ctx.exit_code = Exit(ctx, made.status());
      return;
    }
    *ctx.out << "operator key " << *key_out << "/operator.key, certificate " << *key_out
             << "/operator.pem\noperator_spki_sha256: " << *made << "\n";
  });

  CLI::App* cluster = Group(app, "cluster", "make a cluster");
  auto init_flags = std::make_shared<OperatorFlags>();
  auto cluster_id = std::make_shared<std::string>();
  auto out = std::make_shared<std::string>();
  auto shares = std::make_shared<int>(5);
  auto threshold = std::make_shared<int>(3);
  auto addresses = std::make_shared<std::vector<std::string>>();
  auto endpoint = std::make_shared<std::string>();
  CLI::App* init = cluster->add_subcommand(
      "init", "attest the first control plane and make the cluster on it");
  AddOperatorFlags(init, *init_flags);
  init->add_option("--cluster-id", *cluster_id, "the cluster's name")->required();
  init->add_option("--out", *out, "a new directory for the admin kubeconfig, CA and shares")
      ->required();
  init->add_option("--recovery-shares", *shares, "recovery shares to make (N)");
  init->add_option("--recovery-threshold", *threshold, "shares needed to recover (K)");
  init->add_option("--api-server-address", *addresses,
                   "an address the API server and berthd are reached at (certificate SANs)");
  init->add_option("--control-plane-endpoint", *endpoint,
                   "HOST:PORT where nodes and kubeconfigs reach the API server, e.g. a load "
                   "balancer (default: the node's own address)");
  init->callback([&ctx, init_flags, cluster_id, out, shares, threshold, addresses, endpoint] {
    Status st = ClusterInit(ctx, *init_flags, *cluster_id, *out, *shares, *threshold, *addresses,
                            *endpoint);
    if (!st.ok()) ctx.exit_code = Exit(ctx, st);
    AuditCommand(ctx, "ClusterInit", *init_flags, st, "done");
  });

  auto recover_flags = std::make_shared<OperatorFlags>();
  auto share_files = std::make_shared<std::vector<std::string>>();
  CLI::App* recover = app.add_subcommand(
      "recover", "open a control plane's state disk with K recovery shares, after attesting it");
  AddOperatorFlags(recover, *recover_flags);
  recover->add_option("--share", *share_files, "a recovery share file (repeat)")->required();
  recover->callback([&ctx, recover_flags, share_files] {
    Status st = Recover(ctx, *recover_flags, *share_files);
    if (!st.ok()) ctx.exit_code = Exit(ctx, st);
    AuditCommand(ctx, "Recover", *recover_flags, st, "opened");
  });
}

}  // namespace berth::cli
