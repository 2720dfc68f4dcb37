// `berthctl enrolment write` and `berthctl enrolment show`: the EnrolmentConfig an operator
// puts on a node's ESP, from and to protobuf text format.
//
// The functions take the parsed options and a Context, write to ctx.out / ctx.err and return
// the exit code (commands.h); AddEnrolmentCommands only binds flags to them.
#pragma once

#include <string>

#include "cli/commands.h"

namespace berth::cli {

struct EnrolmentWriteOptions {
  std::string in;          // text-format EnrolmentConfig
  std::string out;         // the binary file to write (replaced atomically)
  std::string cluster_ca;  // optional PEM file; replaces cluster_ca_pem from `in`
};

// Parses and validates `in` (plus `cluster_ca`) and only then writes `out` durably, mode
// 0644 (it holds no secret). Bad input: exit 2, a message naming the file and the line or
// field, and `out` untouched.
int EnrolmentWrite(const EnrolmentWriteOptions& options, Context& ctx);

// Prints the binary EnrolmentConfig at `path` as text format that `enrolment write` reads
// back, followed by comment lines: the SHA-256 of each pinned CA certificate's
// SubjectPublicKeyInfo (kubeadm's caCertHashes form) and "# valid" or "# invalid: <why>".
// Exit 0 valid, 1 parses but fails validation (the agent would refuse it), 2 missing,
// unreadable or corrupt.
int EnrolmentShow(const std::string& path, Context& ctx);

}  // namespace berth::cli
