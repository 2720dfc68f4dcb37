#include "tests/testing/testing.h"

#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <random>
#include <thread>

#include "common/bytes.h"

namespace berth::testing {

TempDir::TempDir() {
  const char* base = std::getenv("TMPDIR");
  std::string tmpl = std::string(base && *base ? base : "/tmp") + "/berth-test-XXXXXX";
  char* made = mkdtemp(tmpl.data());
  if (made == nullptr) {
    ADD_FAILURE() << "mkdtemp failed";
    return;
  }
  path_ = std::filesystem::absolute(made).string();
}

TempDir::~TempDir() {
  std::error_code ec;
  if (!path_.empty() && std::getenv("BERTH_KEEP_TEMP") == nullptr) {
    std::filesystem::remove_all(path_, ec);
  }
}

std::string TestdataDir() {
  if (const char* e = std::getenv("BERTH_TESTDATA"); e && *e) return e;
  return BERTH_TESTDATA_DEFAULT;
}
std::string Testdata(const std::string& rel) { return TestdataDir() + "/" + rel; }

std::string BuildDir() { return BERTH_BUILD_DIR_DEFAULT; }
std::string SourceDir() { return BERTH_SOURCE_DIR_DEFAULT; }

std::string MustRead(const std::string& path) {
  auto r = ReadFile(path);
  if (!r.ok()) {
    ADD_FAILURE() << r.status().ToString();
    return "";
  }
  return *r;
}

void MustWrite(const std::string& path, const std::string& content, mode_t mode) {
  Status st = WriteFileAtomic(path, content, mode);
  if (!st.ok()) ADD_FAILURE() << st.ToString();
}

bool WaitFor(const std::function<bool()>& cond, std::chrono::milliseconds timeout,
             std::chrono::milliseconds interval) {
  auto deadline = std::chrono::steady_clock::now() + timeout;
  while (std::chrono::steady_clock::now() < deadline) {
    if (cond()) return true;
    std::this_thread::sleep_for(interval);
  }
  return cond();
}

bool WaitForText(const std::string& path, std::string_view text,
                 std::chrono::milliseconds timeout) {
  return WaitFor(
      [&] {
        auto r = ReadFile(path);
        return r.ok() && r->find(text) != std::string::npos;
      },
      timeout);
}

int WaitForPortFile(const std::string& path, std::chrono::milliseconds timeout) {
  int port = 0;
  WaitFor(
      [&] {
        auto r = ReadFile(path);
        if (!r.ok()) return false;
        port = std::atoi(TrimWhitespace(*r).c_str());
        return port > 0;
      },
      timeout);
  return port;
}

namespace {

// Binds 127.0.0.1:`port` (0: the kernel's choice) and returns the port bound, or 0.
int BindLoopback(int port) {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0) return 0;
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = htons(static_cast<uint16_t>(port));
  int bound = 0;
  if (bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0) {
    socklen_t len = sizeof addr;
    if (getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) == 0) {
      bound = ntohs(addr.sin_port);
    }
  }
  close(fd);
  return bound;
}

// The lowest port the kernel hands out as a connection's source port.
int FirstEphemeralPort() {
  auto range = ReadFile("/proc/sys/net/ipv4/ip_local_port_range");
  int first = range.ok() ? std::atoi(range->c_str()) : 0;
  return first > 0 ? first : 32768;
}

}  // namespace

// Below the ephemeral range: a port bind(0) gave would be the kind the kernel also gives
// outgoing connections as their source port, and the load and fault tests running beside this
// one open thousands of those; one of them could take the port before its server binds it.
// Random, so that tests running side by side rarely try the same one.
int UnusedPort() {
  constexpr int kLowest = 10000;
  static const int first_ephemeral = FirstEphemeralPort();
  if (first_ephemeral - kLowest >= 1000) {
    thread_local std::mt19937 random(std::random_device{}());
    std::uniform_int_distribution<int> pick(kLowest, first_ephemeral - 1);
    for (int i = 0; i < 100; ++i) {
      int port = pick(random);
      if (BindLoopback(port) == port) return port;
    }
  }
  return BindLoopback(0);
}

TestPki MakeTestPki(const std::string& dir, const std::string& server_name,
                    const std::vector<std::string>& extra_ips) {
  TestPki pki;
  auto ca_key = GenerateP256Key();
  auto server_key = GenerateP256Key();
  EXPECT_TRUE(ca_key.ok() && server_key.ok());
  CertSpec ca_spec{.common_name = "berth test cluster CA", .is_ca = true,
                   .validity = std::chrono::hours(24 * 365)};
  auto ca = IssueCert(ca_spec, ca_key->get(), nullptr, ca_key->get());
  EXPECT_TRUE(ca.ok()) << ca.status().ToString();
  CertSpec server_spec{.common_name = server_name,
                       .dns_names = {server_name, "localhost"},
                       .ip_addresses = {"127.0.0.1"},
                       .server_auth = true};
  server_spec.ip_addresses.insert(server_spec.ip_addresses.end(), extra_ips.begin(),
                                  extra_ips.end());
  auto server = IssueCert(server_spec, server_key->get(), ca->get(), ca_key->get());
  EXPECT_TRUE(server.ok()) << server.status().ToString();
  pki.ca_pem = dir + "/ca.pem";
  pki.ca_key = dir + "/ca.key";
  pki.server_pem = dir + "/server.pem";
  pki.server_key = dir + "/server.key";
  pki.ca_pem_text = *CertToPem(ca->get());
  MustWrite(pki.ca_pem, pki.ca_pem_text);
  MustWrite(pki.ca_key, std::string((*PrivateKeyToPem(ca_key->get())).view()), 0600);
  MustWrite(pki.server_pem, *CertToPem(server->get()));
  MustWrite(pki.server_key, std::string((*PrivateKeyToPem(server_key->get())).view()), 0600);
  return pki;
}

}  // namespace berth::testing
