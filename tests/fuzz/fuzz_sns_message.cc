// An Amazon SNS notification as berthd's SNS endpoint receives it (HTTP body, JSON): parsed,
// its string-to-sign built, its URLs parsed, and verified as far as the checks that come before
// fetching the signing certificate (type, topic allow-list, signature version, age, the URL's
// scheme and host pattern); the fetch itself fails here (no network).
#include <cstddef>
#include <cstdint>
#include <string>

#include "common/clock.h"
#include "server/cloud/sns.h"
#include "tests/fakes/fake_clock.h"
#include "tests/fuzz/fuzz_support.h"

namespace {

class NoNetwork : public berth::server::HttpsFetcher {
 public:
  berth::Result<std::string> Get(const std::string& url,
                                 const std::vector<std::string>&) override {
    return berth::Unavailable("no network in the fuzzer: " + url);
  }
};

berth::server::SnsVerifier* Verifier() {
  static NoNetwork fetcher;
  static berth::FakeClock clock(berth::fuzz::kNow);
  static berth::server::SnsVerifier* verifier = [] {
    berth::server::SnsConfig config;
    config.topic_arns = {"arn:aws:sns:eu-west-1:123456789012:berth"};
    config.cert_sha256 = {std::string(64, 'a')};
    auto v = berth::server::SnsVerifier::Create(config, &fetcher, &clock);
    if (!v.ok()) __builtin_trap();
    return v->release();
  }();
  return verifier;
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  berth::fuzz::Quiet();
  Verifier();
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  auto message =
      berth::server::ParseSnsMessage(std::string(reinterpret_cast<const char*>(data), size));
  if (!message.ok()) return 0;
  (void)berth::server::SnsStringToSign(*message);
  (void)berth::server::ParseUrl(message->signing_cert_url);
  (void)berth::server::ParseUrl(message->subscribe_url);
  (void)Verifier()->Verify(*message);
  return 0;
}
