#include "common/enrolment.h"

#include <arpa/inet.h>
#include <google/protobuf/io/tokenizer.h>
#include <google/protobuf/text_format.h>
#include <google/protobuf/unknown_field_set.h>

#include <vector>

#include "common/bytes.h"
#include "common/crypto.h"

namespace berth {

std::vector<v1::PcrSelection> DefaultPcrSelection() {
  v1::PcrSelection s;
  s.set_bank(v1::HASH_ALGORITHM_SHA256);
  for (uint32_t i : {0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 14, 15}) s.add_pcrs(i);
  return {s};
}

bool IsValidNodeName(std::string_view name) {
  if (name.empty() || name.size() > 253) return false;
  auto alnum = [](char c) { return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9'); };
  // Every dot-separated label starts and ends with an alphanumeric (Kubernetes'
  // IsDNS1123Subdomain): "a-.b" and "a.-b" are not names.
  size_t start = 0;
  while (start <= name.size()) {
    size_t end = name.find('.', start);
    if (end == std::string_view::npos) end = name.size();
    std::string_view label = name.substr(start, end - start);
    if (label.empty() || !alnum(label.front()) || !alnum(label.back())) return false;
    for (char c : label) {
      if (!alnum(c) && c != '-') return false;
    }
    start = end + 1;
  }
  return true;
}

bool IsValidEndpoint(std::string_view endpoint) {
  size_t colon = endpoint.rfind(':');
  if (colon == std::string_view::npos || colon == 0) return false;
  std::string_view host = endpoint.substr(0, colon), port = endpoint.substr(colon + 1);
  if (port.empty() || port.size() > 5) return false;
  int p = 0;
  for (char c : port) {
    if (c < '0' || c > '9') return false;
    p = p * 10 + (c - '0');
  }
  if (p < 1 || p > 65535) return false;
  if (host.front() == '[') return host.back() == ']' && host.size() > 2;
  for (char c : host) {
    if (!(std::isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '.')) return false;
  }
  return true;
}

bool IsIpLiteral(const std::string& s) {
  unsigned char buf[sizeof(struct in6_addr)];
  return inet_pton(AF_INET, s.c_str(), buf) == 1 || inet_pton(AF_INET6, s.c_str(), buf) == 1;
}

Result<std::string> ControlPlaneEndpointHost(const std::string& endpoint) {
  std::string host = endpoint.substr(0, endpoint.rfind(':'));
  const bool bracketed = host.size() > 2 && host.front() == '[';
  if (bracketed) host = host.substr(1, host.size() - 2);
  const bool v6 = host.find(':') != std::string::npos && IsIpLiteral(host);
  if (!IsValidEndpoint(endpoint) || bracketed != v6 ||
      (!IsIpLiteral(host) && !IsValidNodeName(host))) {
    return InvalidArgument("control plane endpoint \"" + endpoint +
                           "\" is not host:port (a name, an IPv4 address or a bracketed IPv6)");
  }
  return host;
}

Status ValidateEnrolmentConfig(const v1::EnrolmentConfig& c) {
  if (c.version() != 1) {
    return InvalidArgument("unsupported version " + std::to_string(c.version()) + " (expected 1)");
  }
  // The first control plane (operator_access.bootstrap) makes the cluster: there is no berthd
  // to name or pin yet.
  const bool bootstrap = c.operator_access().bootstrap();
  if (c.endpoints().empty() && !bootstrap) {
    return InvalidArgument("no endpoints: the node has nowhere to join");
  }
  for (const auto& e : c.endpoints()) {
    if (!IsValidEndpoint(e)) return InvalidArgument("endpoint \"" + e + "\" is not host:port");
  }
  // Whoever is named must be pinned, a bootstrap node's later berthd too: with no CA, TLS
  // would fall back to the system's roots.
  if (c.cluster_ca_pem().empty() && !c.endpoints().empty()) {
    return InvalidArgument("cluster_ca_pem is empty: berthd's TLS chain cannot be pinned");
  }
  if (!c.cluster_ca_pem().empty() && !CertsFromPem(c.cluster_ca_pem()).ok()) {
    return InvalidArgument("cluster_ca_pem holds no valid certificate");
  }
  if (bootstrap && (c.role() != v1::NODE_ROLE_CONTROL_PLANE || !c.has_state_disk() ||
                    c.operator_access().operator_spki_sha256().empty())) {
    return InvalidArgument(
        "operator_access.bootstrap needs a control plane with a state disk and at least one "
        "pinned operator (operator_access.operator_spki_sha256)");
  }
  if (c.role() != v1::NODE_ROLE_WORKER && c.role() != v1::NODE_ROLE_CONTROL_PLANE) {
    return InvalidArgument("role is not set (worker or control plane)");
  }
  if (c.attestation() != v1::ATTESTATION_KIND_TPM && c.attestation() != v1::ATTESTATION_KIND_SEV_SNP) {
    return InvalidArgument("attestation kind is not set (tpm or sev-snp)");
  }
  if (c.has_state_disk()) {
    const auto& d = c.state_disk();
    if (d.device().empty() || d.device().front() != '/') {
      return InvalidArgument("state_disk.device must be an absolute path");
    }
    if (d.mount_point().empty() || d.mount_point().front() != '/') {
      return InvalidArgument("state_disk.mount_point must be an absolute path");
    }
    if (!d.filesystem().empty() && d.filesystem() != "ext4" && d.filesystem() != "xfs") {
      return InvalidArgument("state_disk.filesystem \"" + d.filesystem() + "\" is not ext4 or xfs");
    }
  }
  for (const auto& s : c.pcr_selection()) {
    switch (s.bank()) {
      case v1::HASH_ALGORITHM_SHA1:
      case v1::HASH_ALGORITHM_SHA256:
      case v1::HASH_ALGORITHM_SHA384:
      case v1::HASH_ALGORITHM_SHA512:
        break;
      default:
        return InvalidArgument("pcr_selection has an unknown bank " + std::to_string(s.bank()));
    }
    if (s.pcrs().empty()) return InvalidArgument("pcr_selection names a bank but no PCRs");
    for (uint32_t p : s.pcrs()) {
      if (p > 23) return InvalidArgument("pcr_selection names PCR " + std::to_string(p) + " (0-23)");
    }
  }
  if (!c.node_name().empty() && !IsValidNodeName(c.node_name())) {
    return InvalidArgument("node_name \"" + c.node_name() + "\" is not a valid DNS-1123 subdomain");
  }
  for (const auto& pin : c.operator_access().operator_spki_sha256()) {
    auto bytes = HexDecode(pin);
    if (!bytes.ok() || bytes->size() != 32) {
      return InvalidArgument("operator_access.operator_spki_sha256 \"" + pin +
                             "\" is not 64 hex digits (berthctl operator key prints it)");
    }
  }
  if (c.operator_access().port() > 65535) {
    return InvalidArgument("operator_access.port " + std::to_string(c.operator_access().port()) +
                           " is not a TCP port");
  }
  return OkStatus();
}

Result<v1::EnrolmentConfig> ReadEnrolmentConfigUnvalidated(const std::string& path) {
  auto raw = ReadFile(path, 1 << 20);
  if (!raw.ok()) return raw.status().WithContext("reading enrolment config");
  v1::EnrolmentConfig config;
  if (raw->empty() || !config.ParseFromString(*raw)) {
    return InvalidArgument("enrolment config " + path + " is corrupt: not a binary EnrolmentConfig");
  }
  return config;
}

Result<v1::EnrolmentConfig> LoadEnrolmentConfig(const std::string& path) {
  BERTH_ASSIGN_OR_RETURN(v1::EnrolmentConfig config, ReadEnrolmentConfigUnvalidated(path));
  Status st = ValidateEnrolmentConfig(config);
  if (!st.ok()) return st.WithContext("enrolment config " + path);
  return config;
}

namespace {
class CollectErrors : public google::protobuf::io::ErrorCollector {
 public:
  void AddError(int line, int column, const std::string& message) override {
    if (first.empty()) {
      first = "line " + std::to_string(line + 1) + " column " + std::to_string(column + 1) + ": " + message;
    }
  }
  std::string first;
};
}  // namespace

Result<v1::EnrolmentConfig> ParseEnrolmentTextUnvalidated(const std::string& text) {
  v1::EnrolmentConfig config;
  google::protobuf::TextFormat::Parser parser;
  CollectErrors errors;
  parser.RecordErrorsTo(&errors);
  if (!parser.ParseFromString(text, &config)) {
    return InvalidArgument("enrolment text does not parse: " + errors.first);
  }
  return config;
}

Result<v1::EnrolmentConfig> ParseEnrolmentText(const std::string& text) {
  BERTH_ASSIGN_OR_RETURN(v1::EnrolmentConfig config, ParseEnrolmentTextUnvalidated(text));
  BERTH_RETURN_IF_ERROR(ValidateEnrolmentConfig(config));
  return config;
}

std::string EnrolmentToText(const v1::EnrolmentConfig& config) {
  // Fields this berth does not know (a newer writer, or a damaged file) would print as
  // "5: ..." lines, which no text parser reads back: `show` output must stay a valid input of
  // `write`. They are named in a comment instead, the top level and nested messages alike.
  google::protobuf::TextFormat::Printer printer;
  printer.SetHideUnknownFields(true);
  std::string out;
  printer.PrintToString(config, &out);
  std::vector<std::string> unknown;
  auto collect = [&](const google::protobuf::Message& m, const std::string& where) {
    const auto& fields = m.GetReflection()->GetUnknownFields(m);
    for (int i = 0; i < fields.field_count(); ++i) {
      unknown.push_back(where + std::to_string(fields.field(i).number()));
    }
  };
  collect(config, "");
  if (config.has_state_disk()) collect(config.state_disk(), "state_disk.");
  for (int i = 0; i < config.pcr_selection_size(); ++i) {
    collect(config.pcr_selection(i), "pcr_selection[" + std::to_string(i) + "].");
  }
  if (!unknown.empty()) {
    std::string list;
    for (const auto& u : unknown) list += (list.empty() ? "" : ", ") + u;
    out += "# fields unknown to this berth, not shown: " + list + "\n";
  }
  return out;
}

}  // namespace berth
