// Helpers shared by berth's tests: temporary directories, the attestation testdata, ports,
// a throwaway PKI, and waiting for a condition.
#pragma once

#include <chrono>
#include <functional>
#include <string>
#include <string_view>
#include <vector>

#include "common/crypto.h"

namespace berth::testing {

// A fresh directory under $TMPDIR (absolute path), removed with its contents on destruction.
class TempDir {
 public:
  TempDir();
  ~TempDir();
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  const std::string& path() const { return path_; }
  std::string Join(const std::string& rel) const { return path_ + "/" + rel; }

 private:
  std::string path_;
};

// The real attestation artefacts: $BERTH_TESTDATA, else the default CMake baked in.
std::string TestdataDir();
std::string Testdata(const std::string& rel);

// Build and source directories of this build (set by CMake in the test environment).
std::string BuildDir();
std::string SourceDir();

// Reads a file that must exist; fails the current test (ADD_FAILURE) and returns "" if not.
std::string MustRead(const std::string& path);
void MustWrite(const std::string& path, const std::string& content, mode_t mode = 0644);

// Polls `cond` every `interval` until it holds or `timeout` passes. Returns whether it held.
bool WaitFor(const std::function<bool()>& cond, std::chrono::milliseconds timeout,
             std::chrono::milliseconds interval = std::chrono::milliseconds(20));
// Polls the file at `path` (a log a process is writing; it need not exist yet) until it
// contains `text` or `timeout` passes. Returns whether it did.
bool WaitForText(const std::string& path, std::string_view text, std::chrono::milliseconds timeout);
// Waits for a port file written by a server started with --port 0 and returns the port.
int WaitForPortFile(const std::string& path, std::chrono::milliseconds timeout);
// A TCP port on 127.0.0.1 that nothing listens on right now, below the kernel's range of
// connection source ports (so no outgoing connection takes it before a server binds it).
int UnusedPort();

// A throwaway cluster CA and a server certificate for 127.0.0.1/localhost, as PEM files in
// `dir`: ca.pem, ca.key, server.pem, server.key.
struct TestPki {
  std::string ca_pem, ca_key, server_pem, server_key;  // paths
  std::string ca_pem_text;
};
// `extra_ips` are added to the server certificate's IP addresses.
TestPki MakeTestPki(const std::string& dir, const std::string& server_name = "localhost",
                    const std::vector<std::string>& extra_ips = {});

}  // namespace berth::testing
