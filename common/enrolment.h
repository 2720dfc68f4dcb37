// The EnrolmentConfig: the file on the ESP that tells a node where and how to join.
#pragma once

#include <string>

#include "berth/v1/berth.pb.h"
#include "common/status.h"

namespace berth {

// Where the agent looks by default: the ESP as systemd mounts it.
inline constexpr char kDefaultEnrolmentPath[] = "/efi/berth/enrolment.binpb";

// The default quote selection when the config names none: sha256 PCRs 0-9 and 14 (firmware,
// boot loader, kernel, command line and shim/MOK state) and 15 (berth-agent's own
// measurements: the EnrolmentConfig and "keys released", common/tpm/sealed_boot.h).
std::vector<v1::PcrSelection> DefaultPcrSelection();

// Validates every field and returns a message naming the first problem found.
Status ValidateEnrolmentConfig(const v1::EnrolmentConfig& config);

// Reads the binary EnrolmentConfig at `path` and validates it.
Result<v1::EnrolmentConfig> LoadEnrolmentConfig(const std::string& path);
// Reads it without validating (`berthctl enrolment show` prints invalid configs too). A
// missing file keeps its errno code; an empty or unparseable one is kInvalidArgument.
Result<v1::EnrolmentConfig> ReadEnrolmentConfigUnvalidated(const std::string& path);

// Text format (protobuf text) <-> message, for `berthctl enrolment write/show`. Parse errors
// name the line and column; validation errors name the field.
Result<v1::EnrolmentConfig> ParseEnrolmentText(const std::string& text);
// Parses without validating, for callers that complete the config first (berthctl's
// --cluster-ca) and validate after.
Result<v1::EnrolmentConfig> ParseEnrolmentTextUnvalidated(const std::string& text);
// Always parses back; fields unknown to this berth are left out and named in a closing
// "# fields unknown to this berth, not shown: ..." comment.
std::string EnrolmentToText(const v1::EnrolmentConfig& config);

// A Kubernetes node name: a DNS-1123 subdomain (lowercase alphanumerics, '-' and '.',
// starting and ending alphanumeric, at most 253 characters).
bool IsValidNodeName(std::string_view name);
// host:port with a port in 1..65535; host a name, an IPv4 address or a bracketed IPv6.
bool IsValidEndpoint(std::string_view endpoint);
// An IPv4 or IPv6 address, not a name.
bool IsIpLiteral(const std::string& s);
// kubeadm's controlPlaneEndpoint, the address of the cluster's API in front of its control
// planes (berthctl cluster init --control-plane-endpoint, berthd --control-plane-endpoint):
// host:port, the host a DNS name, an IPv4 address or a bracketed IPv6 address. Its host (an
// IPv6 address without brackets), or INVALID_ARGUMENT naming the endpoint.
Result<std::string> ControlPlaneEndpointHost(const std::string& endpoint);

}  // namespace berth
