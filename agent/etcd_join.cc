#include "agent/etcd_join.h"

#include <arpa/inet.h>
#include <ifaddrs.h>
#include <net/if.h>
#include <netinet/in.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include <algorithm>
#include <functional>

#include "common/bytes.h"

namespace berth::agent {

namespace {

struct X509ReqFree {
  void operator()(X509_REQ* r) const { X509_REQ_free(r); }
};
struct X509CrlFree {
  void operator()(X509_CRL* c) const { X509_CRL_free(c); }
};
struct BioFree {
  void operator()(BIO* b) const { BIO_free(b); }
};

Status Bad(const std::string& what) {
  return InvalidArgument("malformed join ticket: etcd " + what);
}

// The CRL `pem` in DER, once it parses and the etcd CA `ca` signed it; INVALID_ARGUMENT
// saying which it is not.
Result<std::string> VerifiedCrlDer(const std::string& pem, X509* ca) {
  std::unique_ptr<BIO, BioFree> bio(BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size())));
  std::unique_ptr<X509_CRL, X509CrlFree> crl(
      PEM_read_bio_X509_CRL(bio.get(), nullptr, nullptr, nullptr));
  if (!crl) {
    ERR_clear_error();
    return InvalidArgument("CRL does not parse");
  }
  if (X509_CRL_verify(crl.get(), X509_get0_pubkey(ca)) != 1) {
    ERR_clear_error();
    return InvalidArgument("CRL is not signed by the etcd CA");
  }
  unsigned char* der = nullptr;
  const int n = i2d_X509_CRL(crl.get(), &der);
  if (n <= 0) {
    ERR_clear_error();
    return Internal("encoding the etcd CRL as DER failed");
  }
  std::string out(reinterpret_cast<const char*>(der), static_cast<size_t>(n));
  OPENSSL_free(der);
  return out;
}

std::string HostForUrl(const std::string& address) {
  return address.find(':') != std::string::npos ? "[" + address + "]" : address;
}

// The certificate's subject CN.
std::string CommonName(X509* cert) {
  char buf[256] = {0};
  int n = X509_NAME_get_text_by_NID(X509_get_subject_name(cert), NID_commonName, buf, sizeof buf);
  return n > 0 ? std::string(buf, static_cast<size_t>(n)) : "";
}

Status CheckCert(const std::string& pem, const char* what, X509* ca, EVP_PKEY* key,
                 const std::string& node_name) {
  auto cert = CertFromPem(pem);
  if (!cert.ok()) return Bad(std::string(what) + " certificate does not parse");
  EVP_PKEY* ca_key = X509_get0_pubkey(ca);
  if (ca_key == nullptr || X509_verify(cert->get(), ca_key) != 1) {
    ERR_clear_error();
    return Bad(std::string(what) + " certificate is not signed by the etcd CA in the ticket");
  }
  if (EVP_PKEY_eq(X509_get0_pubkey(cert->get()), key) != 1) {
    ERR_clear_error();
    return Bad(std::string(what) + " certificate is not for this node's " + what + " key");
  }
  if (CommonName(cert->get()) != node_name) {
    return Bad(std::string(what) + " certificate names \"" + CommonName(cert->get()) +
               "\", not this node");
  }
  return OkStatus();
}

}  // namespace

Result<Bytes> MakeCsr(EVP_PKEY* key, const std::string& common_name) {
  std::unique_ptr<X509_REQ, X509ReqFree> req(X509_REQ_new());
  if (!req) return OpenSslError("allocating a CSR");
  X509_REQ_set_version(req.get(), 0);
  X509_NAME* name = X509_REQ_get_subject_name(req.get());
  if (X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_UTF8,
                                 reinterpret_cast<const unsigned char*>(common_name.c_str()), -1,
                                 -1, 0) != 1 ||
      X509_REQ_set_pubkey(req.get(), key) != 1 ||
      X509_REQ_sign(req.get(), key, EVP_sha256()) <= 0) {
    return OpenSslError("making a CSR");
  }
  unsigned char* der = nullptr;
  int n = i2d_X509_REQ(req.get(), &der);
  if (n <= 0) return OpenSslError("encoding a CSR");
  Bytes out(der, der + n);
  OPENSSL_free(der);
  return out;
}

Result<EtcdKeys> MakeEtcdKeys(const std::string& node_name) {
  EtcdKeys keys;
  BERTH_ASSIGN_OR_RETURN(keys.server_key, GenerateP256Key());
  BERTH_ASSIGN_OR_RETURN(keys.peer_key, GenerateP256Key());
  BERTH_ASSIGN_OR_RETURN(keys.server_csr, MakeCsr(keys.server_key.get(), node_name));
  BERTH_ASSIGN_OR_RETURN(keys.peer_csr, MakeCsr(keys.peer_key.get(), node_name));
  return keys;
}

std::string EtcdEndpoints::PeerUrl() const {
  return "https://" + HostForUrl(addresses.empty() ? "" : addresses[0]) + ":" +
         std::to_string(peer_port);
}

std::string EtcdEndpoints::ClientUrl() const {
  return "https://" + HostForUrl(addresses.empty() ? "" : addresses[0]) + ":" +
         std::to_string(client_port);
}

Result<std::vector<std::string>> DetectNodeAddresses() {
  ifaddrs* list = nullptr;
  if (getifaddrs(&list) != 0) return ErrnoStatus("getifaddrs");
  std::vector<std::string> v4, v6;
  for (ifaddrs* i = list; i != nullptr; i = i->ifa_next) {
    if (i->ifa_addr == nullptr || !(i->ifa_flags & IFF_UP) || (i->ifa_flags & IFF_LOOPBACK))
      continue;
    char buf[INET6_ADDRSTRLEN] = {0};
    if (i->ifa_addr->sa_family == AF_INET) {
      auto* a = reinterpret_cast<sockaddr_in*>(i->ifa_addr);
      uint32_t ip = ntohl(a->sin_addr.s_addr);
      if ((ip >> 16) == 0xa9fe) continue;  // 169.254/16 link-local
      inet_ntop(AF_INET, &a->sin_addr, buf, sizeof buf);
      v4.push_back(buf);
    } else if (i->ifa_addr->sa_family == AF_INET6) {
      auto* a = reinterpret_cast<sockaddr_in6*>(i->ifa_addr);
      if (IN6_IS_ADDR_LINKLOCAL(&a->sin6_addr) || IN6_IS_ADDR_LOOPBACK(&a->sin6_addr)) continue;
      inet_ntop(AF_INET6, &a->sin6_addr, buf, sizeof buf);
      v6.push_back(buf);
    }
  }
  freeifaddrs(list);
  v4.insert(v4.end(), v6.begin(), v6.end());
  if (v4.empty())
    return FailedPrecondition("this node has no global IP address for etcd to serve on");
  return v4;
}

Status ValidateEtcdMaterial(const v1::EtcdMaterial& m, const EtcdKeys& keys,
                            const std::string& node_name, const std::string& peer_url) {
  if (m.member_name() != node_name) {
    return Bad("member name \"" + m.member_name() + "\" is not this node's name");
  }
  if (m.member_id() == 0) return Bad("member ID is missing");
  auto ca = CertFromPem(m.ca_certificate());
  if (!ca.ok()) return Bad("CA certificate does not parse");
  if (X509_check_ca(ca->get()) == 0) return Bad("CA certificate is not a CA");
  BERTH_RETURN_IF_ERROR(
      CheckCert(m.server_certificate(), "server", ca->get(), keys.server_key.get(), node_name));
  BERTH_RETURN_IF_ERROR(
      CheckCert(m.peer_certificate(), "peer", ca->get(), keys.peer_key.get(), node_name));
  if (auto crl = VerifiedCrlDer(m.crl(), ca->get()); !crl.ok()) {
    return Bad(crl.status().message());
  }
  const std::string self = node_name + "=" + peer_url;
  bool listed = false;
  for (const auto& entry : m.initial_cluster()) {
    size_t eq = entry.find('=');
    if (eq == 0 || eq == std::string::npos || entry.compare(eq + 1, 8, "https://") != 0 ||
        entry.find_first_of(",\n\r ") != std::string::npos) {
      return Bad("initial cluster entry \"" + entry + "\" is not name=https://host:port");
    }
    listed |= entry == self;
  }
  if (!listed) return Bad("initial cluster does not list this node at " + peer_url);
  return OkStatus();
}

std::string RenderEtcdEnvironment(const std::string& root, const v1::EtcdMaterial& m,
                                  const EtcdEndpoints& e, const std::string& data_dir,
                                  bool new_cluster) {
  const std::string pki = JoinRoot(root, kEtcdPkiDir);
  std::string initial;
  for (const auto& entry : m.initial_cluster()) initial += (initial.empty() ? "" : ",") + entry;
  std::string listen_clients = e.ClientUrl();
  if (e.addresses.empty() || e.addresses[0] != "127.0.0.1") {
    // kube-apiserver on this node talks to its etcd over loopback.
    listen_clients += ",https://127.0.0.1:" + std::to_string(e.client_port);
  }
  std::string out = new_cluster ? "# Written by berth-agent at bootstrap (docs/etcd.md); etcd "
                                  "reads ETCD_* as flags.\n"
                                : "# Written by berth-agent from its join ticket (docs/etcd.md); "
                                  "etcd reads ETCD_* as flags.\n";
  auto var = [&](const char* k, const std::string& v) { out += std::string(k) + "=" + v + "\n"; };
  var("ETCD_NAME", m.member_name());
  var("ETCD_DATA_DIR", data_dir);
  var("ETCD_INITIAL_CLUSTER", initial);
  var("ETCD_INITIAL_CLUSTER_STATE", new_cluster ? "new" : "existing");
  var("ETCD_INITIAL_ADVERTISE_PEER_URLS", e.PeerUrl());
  var("ETCD_LISTEN_PEER_URLS", e.PeerUrl());
  var("ETCD_ADVERTISE_CLIENT_URLS", e.ClientUrl());
  var("ETCD_LISTEN_CLIENT_URLS", listen_clients);
  var("ETCD_TRUSTED_CA_FILE", pki + "/ca.crt");
  var("ETCD_CERT_FILE", pki + "/server.crt");
  var("ETCD_KEY_FILE", pki + "/server.key");
  var("ETCD_CLIENT_CERT_AUTH", "true");
  var("ETCD_CLIENT_CRL_FILE", pki + "/" + kEtcdCrlFile);
  var("ETCD_PEER_TRUSTED_CA_FILE", pki + "/ca.crt");
  var("ETCD_PEER_CERT_FILE", pki + "/peer.crt");
  var("ETCD_PEER_KEY_FILE", pki + "/peer.key");
  var("ETCD_PEER_CLIENT_CERT_AUTH", "true");
  var("ETCD_PEER_CRL_FILE", pki + "/" + kEtcdCrlFile);
  // As kubeadm's etcd (phases/etcd/local.go): the API server's watch cache learns etcd's
  // revision from progress notifications, and a member checks its data against the others'
  // before it serves.
  var("ETCD_WATCH_PROGRESS_NOTIFY_INTERVAL", "5s");
  var("ETCD_FEATURE_GATES", "InitialCorruptCheck=true");
  return out;
}

Status WriteEtcdFiles(const std::string& root, const v1::EtcdMaterial& m, const EtcdKeys& keys,
                      const EtcdEndpoints& e, const std::string& data_dir) {
  const std::string pki = JoinRoot(root, kEtcdPkiDir);
  BERTH_RETURN_IF_ERROR(MakeDirs(pki, 0755));
  BERTH_ASSIGN_OR_RETURN(SecretBytes server_key, PrivateKeyToPem(keys.server_key.get()));
  BERTH_ASSIGN_OR_RETURN(SecretBytes peer_key, PrivateKeyToPem(keys.peer_key.get()));
  BERTH_RETURN_IF_ERROR(WriteFileAtomic(pki + "/server.key", server_key.span(), 0600));
  BERTH_RETURN_IF_ERROR(WriteFileAtomic(pki + "/peer.key", peer_key.span(), 0600));
  BERTH_RETURN_IF_ERROR(WriteFileAtomic(pki + "/server.crt", m.server_certificate(), 0644));
  BERTH_RETURN_IF_ERROR(WriteFileAtomic(pki + "/peer.crt", m.peer_certificate(), 0644));
  BERTH_RETURN_IF_ERROR(WriteFileAtomic(pki + "/ca.crt", m.ca_certificate(), 0644));
  BERTH_RETURN_IF_ERROR(WriteEtcdCrl(root, m.crl()));
  BERTH_RETURN_IF_ERROR(MakeDirs(data_dir, 0700));
  const std::string env = JoinRoot(root, kEtcdEnvPath);
  return WriteFileAtomic(env, RenderEtcdEnvironment(root, m, e, data_dir), 0644);
}

Status WriteEtcdCrl(const std::string& root, const std::string& crl_pem) {
  const std::string pki = JoinRoot(root, kEtcdPkiDir);
  BERTH_ASSIGN_OR_RETURN(std::string ca_pem, ReadFile(pki + "/ca.crt"));
  BERTH_ASSIGN_OR_RETURN(X509Ptr ca, CertFromPem(ca_pem));
  BERTH_ASSIGN_OR_RETURN(std::string der, VerifiedCrlDer(crl_pem, ca.get()));
  return WriteFileAtomic(pki + "/" + kEtcdCrlFile, der, 0644);
}

Status SystemdEtcdService::Start() {
  BERTH_ASSIGN_OR_RETURN(ProcessResult r,
                         runner_->Run({systemctl_, "start", "--no-block", "etcd.service"}));
  if (!r.success()) {
    return Unavailable("systemctl start --no-block etcd.service failed (" + r.Describe() +
                       "): " + TrimWhitespace(r.output));
  }
  return OkStatus();
}

Result<etcd::ClientOptions> LocalEtcdClientOptions(const std::string& root,
                                                   const std::string& client_url) {
  const std::string pki = JoinRoot(root, kEtcdPkiDir);
  etcd::ClientOptions o;
  o.endpoints = {client_url};
  BERTH_ASSIGN_OR_RETURN(o.ca_pem, ReadFile(pki + "/ca.crt"));
  BERTH_ASSIGN_OR_RETURN(o.cert_pem, ReadFile(pki + "/server.crt"));
  BERTH_ASSIGN_OR_RETURN(o.key_pem, ReadSecretFile(pki + "/server.key"));
  o.call_timeout = std::chrono::seconds(3);
  return o;
}

Status WaitForEtcdMember(etcd::Client& client, const std::string& client_url, uint64_t member_id,
                         Clock& clock, std::chrono::seconds timeout,
                         const std::function<void(const std::string&)>& progress) {
  const int64_t deadline = clock.NowUnix() + timeout.count();
  std::string state, last = "no answer yet";
  for (;;) {
    auto st = client.Status(client_url);
    std::string now;
    if (!st.ok()) {
      now = "starting";
      last = st.status().ToString();
    } else if (member_id != 0 && st->header().member_id() != member_id) {
      return FailedPrecondition("the etcd at " + client_url + " is member " +
                                etcd::MemberIdHex(st->header().member_id()) + ", not " +
                                etcd::MemberIdHex(member_id) + " as berthd added it");
    } else if (st->leader() == 0) {
      now = "started, no leader yet";
      last = now;
    } else if (st->islearner()) {
      now = "learner, waiting for promotion";
      last = now;
    } else {
      progress("voting member");
      return OkStatus();
    }
    if (now != state) {
      progress(now);
      state = now;
    }
    if (clock.NowUnix() >= deadline) {
      return Unavailable("etcd at " + client_url + " is not a voting member after " +
                         std::to_string(timeout.count()) + " s (" + last + ")");
    }
    clock.Sleep(std::chrono::milliseconds(500));
  }
}

}  // namespace berth::agent
