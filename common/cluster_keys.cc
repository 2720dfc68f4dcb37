#include "common/cluster_keys.h"

#include <openssl/err.h>
#include <openssl/x509.h>

#include <filesystem>
#include <regex>
#include <set>
#include <tuple>

#include "common/bytes.h"
#include "common/crypto.h"
#include "common/enrolment.h"

namespace berth {

namespace {

const SharedPkiFile* Find(std::string_view name) {
  for (const auto& f : kSharedPkiFiles) {
    if (f.name == name) return &f;
  }
  return nullptr;
}

}  // namespace

Result<SecretBytes> DeriveDiskKey(const SecretBytes& master_secret, const std::string& cluster_id,
                                  const std::string& disk_uuid) {
  std::string info = "berth-disk-v1" + disk_uuid;
  return HkdfSha256(master_secret.span(), AsBytes(cluster_id), AsBytes(info), 32);
}

Result<std::vector<SharedPki>> ReadSharedPki(const std::string& dir) {
  std::vector<SharedPki> out;
  for (const auto& f : kSharedPkiFiles) {
    const std::string path = dir + "/" + std::string(f.name);
    auto content = ReadSecretFile(path, 64 << 10);
    if (!content.ok()) return content.status().WithContext("reading the control planes' PKI");
    if (content->empty()) return InvalidArgument(path + " is empty");
    out.push_back({std::string(f.name), std::move(*content)});
  }
  return out;
}

v1::ClusterKeys MakeClusterKeys(const SecretBytes& master_secret,
                                const std::vector<SharedPki>& pki) {
  v1::ClusterKeys out;
  out.set_master_secret(std::string(master_secret.view()));
  for (const auto& f : pki) {
    v1::PkiFile* file = out.add_kubernetes_pki();
    file->set_name(f.name);
    file->set_content(std::string(f.content.view()));
  }
  return out;
}

Status CheckClusterKeys(const v1::ClusterKeys& keys) {
  auto bad = [](const std::string& what) {
    return InvalidArgument("malformed cluster keys in the join ticket: " + what);
  };
  if (keys.master_secret().size() < 32) {
    return bad("the master secret has " + std::to_string(keys.master_secret().size()) +
               " bytes, at least 32 expected");
  }
  std::set<std::string> seen;
  for (const auto& f : keys.kubernetes_pki()) {
    if (Find(f.name()) == nullptr) {
      // Echoed only when it is a plain file name: it goes into logs.
      static const std::regex kPlain("^[A-Za-z0-9._-]{1,64}$");
      const std::string shown =
          std::regex_match(f.name(), kPlain) ? "\"" + f.name() + "\"" : "a file name";
      return bad(shown + " is not one of kubeadm's shared PKI files");
    }
    if (!seen.insert(f.name()).second) return bad(f.name() + " is given twice");
    if (f.content().empty()) return bad(f.name() + " is empty");
  }
  for (const auto& f : kSharedPkiFiles) {
    if (!seen.contains(std::string(f.name))) return bad(std::string(f.name) + " is missing");
  }
  if (!keys.control_plane_endpoint().empty()) {
    auto host = ControlPlaneEndpointHost(keys.control_plane_endpoint());
    if (!host.ok()) return bad("its control plane endpoint is not host:port");
  }
  if (keys.has_berthd()) {
    const v1::BerthdKeys& b = keys.berthd();
    for (const auto& [what, pem] :
         {std::pair{"join CA", &b.join_ca_key()}, std::pair{"etcd CA", &b.etcd_ca_key()}}) {
      if (!PrivateKeyFromPem(*pem).ok()) {
        return bad(std::string("berthd's ") + what + " key is not a PEM private key");
      }
    }
    if (b.policy().empty()) return bad("berthd's policy is empty");
  }
  return OkStatus();
}

Status CheckBerthdKeys(const v1::BerthdKeys& keys, const std::string& join_ca_pem,
                       const std::string& etcd_ca_pem) {
  for (const auto& [what, key_pem, ca_pem] :
       {std::tuple{"the join CA this node pins", &keys.join_ca_key(), &join_ca_pem},
        std::tuple{"the ticket's etcd CA", &keys.etcd_ca_key(), &etcd_ca_pem}}) {
    BERTH_ASSIGN_OR_RETURN(X509Ptr ca, CertFromPem(*ca_pem));
    BERTH_ASSIGN_OR_RETURN(EvpPkeyPtr key, PrivateKeyFromPem(*key_pem));
    if (X509_check_private_key(ca.get(), key.get()) != 1) {
      ERR_clear_error();
      return InvalidArgument(std::string("malformed cluster keys in the join ticket: berthd's "
                                         "key for ") +
                             what + " is not that CA's key");
    }
  }
  return OkStatus();
}

Status WriteClusterKeys(const v1::ClusterKeys& keys, const std::string& pki_dir,
                        const std::string& master_secret_path) {
  BERTH_RETURN_IF_ERROR(MakeDirs(pki_dir, 0755));
  for (const auto& f : keys.kubernetes_pki()) {
    const SharedPkiFile* known = Find(f.name());
    if (known == nullptr) return InvalidArgument(f.name() + " is not a shared PKI file");
    BERTH_RETURN_IF_ERROR(
        WriteFileAtomic(pki_dir + "/" + f.name(), f.content(), known->secret ? 0600 : 0644));
  }
  BERTH_RETURN_IF_ERROR(
      MakeDirs(std::filesystem::path(master_secret_path).parent_path().string(), 0700));
  return WriteFileAtomic(master_secret_path, keys.master_secret(), 0600);
}

void ScrubClusterKeys(v1::ClusterKeys& keys) {
  WipeString(*keys.mutable_master_secret());
  for (auto& f : *keys.mutable_kubernetes_pki()) {
    const SharedPkiFile* known = Find(f.name());
    if (known == nullptr || known->secret) WipeString(*f.mutable_content());
  }
  if (keys.has_berthd()) {
    WipeString(*keys.mutable_berthd()->mutable_join_ca_key());
    WipeString(*keys.mutable_berthd()->mutable_etcd_ca_key());
  }
}

}  // namespace berth
