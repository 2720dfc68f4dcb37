// --snp-kds-url: where berthd may fetch AMD's certificates from (server/cloud/amd_kds.h).
#include "server/cloud/amd_kds.h"

#include <gtest/gtest.h>

#include "tests/testing/testing.h"

namespace berth::server {
namespace {

// Issue 22, section 4: the loopback check was a string prefix.
TEST(AmdKdsTest, PlainHttpKdsOnlyOnALoopbackHostAsTheUrlParses) {
  EXPECT_EQ(CheckKdsUrl("http://127.attacker.example").message(),
            "--snp-kds-url http://127.attacker.example: must be https:// (plain http only for a "
            "loopback stand-in; host 127.attacker.example is not a loopback address)");
  EXPECT_EQ(CheckKdsUrl("http://localhost@192.0.2.2:18099").message(),
            "--snp-kds-url http://localhost@192.0.2.2:18099: a KDS URL carries no user name or "
            "password");
  EXPECT_EQ(CheckKdsUrl("http://localhost.attacker.example:80").code(), Code::kInvalidArgument);
  EXPECT_EQ(CheckKdsUrl("http://[::2]:80").code(), Code::kInvalidArgument);
  EXPECT_EQ(CheckKdsUrl("ftp://127.0.0.1/").code(), Code::kInvalidArgument);
  EXPECT_EQ(CheckKdsUrl("kdsintf.amd.com").message(),
            "--snp-kds-url kdsintf.amd.com: not a URL");
  EXPECT_EQ(CheckKdsUrl("https://user:pw@kdsintf.amd.com").code(), Code::kInvalidArgument);
  for (const char* ok : {"http://127.0.0.1:18099", "http://127.9.9.9", "http://[::1]:8080",
                         "http://localhost:18099", "https://kdsintf.amd.com"}) {
    EXPECT_TRUE(CheckKdsUrl(ok).ok()) << ok << ": " << CheckKdsUrl(ok).ToString();
  }
}

}  // namespace
}  // namespace berth::server
