#include "agent/join_client.h"
#include "tests/fakes/fake_clock.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <openssl/x509v3.h>

#include <algorithm>
#include <tuple>

namespace berth::agent {
namespace {

using std::chrono::milliseconds;
using ::testing::ElementsAre;

// ---- BackoffDelay ----

// The cap for retry number `attempt`: initial * 2^attempt, at most max.
int64_t Cap(const RetryPolicy& p, int attempt) {
  int64_t d = p.initial_backoff.count();
  for (int i = 0; i < attempt && d < p.max_backoff.count(); ++i) d *= 2;
  return std::min(d, static_cast<int64_t>(p.max_backoff.count()));
}

TEST(BackoffDelayTest, DoublesFromInitialUpToMaxWithJitterInTheUpperHalf) {
  RetryPolicy policy{.initial_backoff = milliseconds(1000), .max_backoff = milliseconds(30000)};
  const int64_t expected_cap[] = {1000,  2000,  4000,  8000,  16000, 30000,
                                  30000, 30000, 30000, 30000, 30000};
  std::mt19937_64 rng(20240601);
  for (int attempt = 0; attempt <= 10; ++attempt) {
    SCOPED_TRACE(attempt);
    const int64_t cap = expected_cap[attempt];
    ASSERT_EQ(Cap(policy, attempt), cap);
    int64_t lo = cap, hi = 0;
    for (int draw = 0; draw < 200; ++draw) {
      int64_t d = BackoffDelay(policy, attempt, rng).count();
      ASSERT_GE(d, cap / 2);
      ASSERT_LE(d, cap);
      lo = std::min(lo, d);
      hi = std::max(hi, d);
    }
    // Full jitter: the draws spread over the whole band, not a fixed point in it.
    EXPECT_LT(lo, cap * 6 / 10);
    EXPECT_GT(hi, cap * 9 / 10);
  }
}

TEST(BackoffDelayTest, CapThatIsNotAPowerOfTwoMultipleIsHonoured) {
  RetryPolicy policy{.initial_backoff = milliseconds(300), .max_backoff = milliseconds(1000)};
  std::mt19937_64 rng(7);
  for (auto [attempt, cap] : {std::pair{0, 300}, {1, 600}, {2, 1000}, {3, 1000}, {1000, 1000}}) {
    SCOPED_TRACE(attempt);
    for (int draw = 0; draw < 50; ++draw) {
      int64_t d = BackoffDelay(policy, attempt, rng).count();
      EXPECT_GE(d, cap / 2);
      EXPECT_LE(d, cap);
    }
  }
}

TEST(BackoffDelayTest, SameSeedGivesTheSameDelays) {
  RetryPolicy policy;
  std::mt19937_64 a(99), b(99);
  for (int attempt = 0; attempt <= 10; ++attempt) {
    EXPECT_EQ(BackoffDelay(policy, attempt, a), BackoffDelay(policy, attempt, b));
  }
}

// ---- CallWithRetry ----

// Scripted attempts: each call records its endpoint and returns the next scripted status, or
// the value 42 when the script is exhausted.
class Script {
 public:
  explicit Script(std::vector<Status> failures) : failures_(std::move(failures)) {}
  std::function<Result<int>(const std::string&)> Attempt() {
    return [this](const std::string& endpoint) -> Result<int> {
      endpoints.push_back(endpoint);
      if (next_ < failures_.size()) return failures_[next_++];
      return 42;
    };
  }
  std::function<void(const std::string&, const Status&, milliseconds)> OnRetry() {
    return [this](const std::string& endpoint, const Status& st, milliseconds delay) {
      retries.emplace_back(endpoint, st.code(), delay);
    };
  }
  int64_t TotalRetryDelayMs() const {
    int64_t total = 0;
    for (const auto& r : retries) total += std::get<2>(r).count();
    return total;
  }

  std::vector<std::string> endpoints;
  std::vector<std::tuple<std::string, Code, milliseconds>> retries;

 private:
  std::vector<Status> failures_;
  size_t next_ = 0;
};

const std::vector<std::string> kEndpoints = {"a:1", "b:2", "c:3"};
const RetryPolicy kPolicy{
    .initial_backoff = milliseconds(1000), .max_backoff = milliseconds(30000), .max_attempts = 0};

TEST(CallWithRetryTest, FirstSuccessReturnsAtOnceWithoutSleeping) {
  FakeClock clock(0);  // slept_ms() is then the total time slept
  Script script({});
  Result<int> r =
      CallWithRetry<int>(kEndpoints, kPolicy, clock, script.Attempt(), script.OnRetry());
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(*r, 42);
  EXPECT_THAT(script.endpoints, ElementsAre("a:1"));
  EXPECT_TRUE(script.retries.empty());
  EXPECT_EQ(clock.slept_ms(), 0);
}

TEST(CallWithRetryTest, EndpointsAreTriedInRotationUntilOneAnswers) {
  FakeClock clock(0);
  Script script({Unavailable("a down"), Unavailable("b down"), Unavailable("c down"),
                 Unavailable("a still down")});
  Result<int> r =
      CallWithRetry<int>(kEndpoints, kPolicy, clock, script.Attempt(), script.OnRetry());
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(*r, 42);
  EXPECT_THAT(script.endpoints, ElementsAre("a:1", "b:2", "c:3", "a:1", "b:2"));
  ASSERT_EQ(script.retries.size(), 4u);
  const char* failed_at[] = {"a:1", "b:2", "c:3", "a:1"};
  for (size_t n = 0; n < 4; ++n) {
    SCOPED_TRACE(n);
    const auto& [endpoint, code, delay] = script.retries[n];
    EXPECT_EQ(endpoint, failed_at[n]);
    EXPECT_EQ(code, Code::kUnavailable);
    EXPECT_GE(delay.count(), Cap(kPolicy, static_cast<int>(n)) / 2);
    EXPECT_LE(delay.count(), Cap(kPolicy, static_cast<int>(n)));
  }
  // The clock moved by exactly the announced delays: 500+1000+2000+4000 .. 1000+2000+4000+8000.
  EXPECT_EQ(clock.slept_ms(), script.TotalRetryDelayMs());
  EXPECT_GE(clock.slept_ms(), 7500);
  EXPECT_LE(clock.slept_ms(), 15000);
}

TEST(CallWithRetryTest, RetryableCodesAreRetried) {
  for (Code code :
       {Code::kUnavailable, Code::kDeadlineExceeded, Code::kAborted, Code::kResourceExhausted}) {
    SCOPED_TRACE(CodeName(code));
    FakeClock clock(0);
    Script script({Status(code, "transient")});
    Result<int> r =
        CallWithRetry<int>(kEndpoints, kPolicy, clock, script.Attempt(), script.OnRetry());
    ASSERT_TRUE(r.ok());
    EXPECT_THAT(script.endpoints, ElementsAre("a:1", "b:2"));
    ASSERT_EQ(script.retries.size(), 1u);
    EXPECT_EQ(std::get<1>(script.retries[0]), code);
    EXPECT_GE(clock.slept_ms(), 500);
    EXPECT_LE(clock.slept_ms(), 1000);
  }
}

TEST(CallWithRetryTest, FinalCodesStopAfterExactlyOneCall) {
  for (Code code : {Code::kPermissionDenied, Code::kInvalidArgument, Code::kFailedPrecondition,
                    Code::kUnauthenticated, Code::kNotFound, Code::kInternal}) {
    SCOPED_TRACE(CodeName(code));
    FakeClock clock(0);
    Script script({Status(code, "refused: AK not trusted")});
    Result<int> r =
        CallWithRetry<int>(kEndpoints, kPolicy, clock, script.Attempt(), script.OnRetry());
    EXPECT_EQ(r.status().code(), code);
    EXPECT_EQ(r.status().message(), "refused: AK not trusted");
    EXPECT_THAT(script.endpoints, ElementsAre("a:1"));
    EXPECT_TRUE(script.retries.empty());
    EXPECT_EQ(clock.slept_ms(), 0);
  }
}

TEST(CallWithRetryTest, FinalCodeAfterRetriesIsReturnedUnchanged) {
  FakeClock clock(0);
  Script script({Unavailable("a down"), PermissionDenied("PCR 7 differs")});
  Result<int> r =
      CallWithRetry<int>(kEndpoints, kPolicy, clock, script.Attempt(), script.OnRetry());
  EXPECT_EQ(r.status().code(), Code::kPermissionDenied);
  EXPECT_EQ(r.status().message(), "PCR 7 differs");
  EXPECT_THAT(script.endpoints, ElementsAre("a:1", "b:2"));
  EXPECT_EQ(script.retries.size(), 1u);
}

TEST(CallWithRetryTest, MaxAttemptsIsHonouredExactly) {
  FakeClock clock(0);
  RetryPolicy policy = kPolicy;
  policy.max_attempts = 4;
  std::vector<Status> failures(10, Unavailable("connection refused"));
  Script script(failures);
  Result<int> r = CallWithRetry<int>(kEndpoints, policy, clock, script.Attempt(), script.OnRetry());
  EXPECT_EQ(r.status().code(), Code::kUnavailable);
  EXPECT_EQ(r.status().message(), "giving up after 4 attempts: connection refused");
  EXPECT_THAT(script.endpoints, ElementsAre("a:1", "b:2", "c:3", "a:1"));
  // No sleep after the last attempt: three retries, 500+1000+2000 .. 1000+2000+4000 ms.
  ASSERT_EQ(script.retries.size(), 3u);
  EXPECT_EQ(clock.slept_ms(), script.TotalRetryDelayMs());
  EXPECT_GE(clock.slept_ms(), 3500);
  EXPECT_LE(clock.slept_ms(), 7000);
}

TEST(CallWithRetryTest, SingleAttemptNeverSleeps) {
  FakeClock clock(0);
  RetryPolicy policy = kPolicy;
  policy.max_attempts = 1;
  Script script({DeadlineExceeded("Challenge at a:1: deadline exceeded")});
  Result<int> r = CallWithRetry<int>(kEndpoints, policy, clock, script.Attempt(), script.OnRetry());
  EXPECT_EQ(r.status().code(), Code::kDeadlineExceeded);
  EXPECT_THAT(r.status().message(), ::testing::StartsWith("giving up after 1 attempt"));
  EXPECT_THAT(script.endpoints, ElementsAre("a:1"));
  EXPECT_TRUE(script.retries.empty());
  EXPECT_EQ(clock.slept_ms(), 0);
}

TEST(CallWithRetryTest, UnlimitedAttemptsKeepGoingUntilSuccess) {
  FakeClock clock(0);
  std::vector<Status> failures(12, Unavailable("down"));
  Script script(failures);
  Result<int> r =
      CallWithRetry<int>({"only:1"}, kPolicy, clock, script.Attempt(), script.OnRetry());
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(script.endpoints.size(), 13u);
  EXPECT_EQ(script.retries.size(), 12u);
  // Retries 5..11 are capped at 30 s: the total is at least half of 1+2+4+8+16 s + 7*30 s.
  EXPECT_EQ(clock.slept_ms(), script.TotalRetryDelayMs());
  EXPECT_GE(clock.slept_ms(), (31000 + 7 * 30000) / 2);
  EXPECT_LE(clock.slept_ms(), 31000 + 7 * 30000);
}

TEST(CallWithRetryTest, NoEndpointsIsAnErrorWithoutAnyCall) {
  FakeClock clock(0);
  Script script({});
  Result<int> r = CallWithRetry<int>({}, kPolicy, clock, script.Attempt(), script.OnRetry());
  EXPECT_EQ(r.status().code(), Code::kInvalidArgument);
  EXPECT_EQ(r.status().message(), "no endpoints to call");
  EXPECT_TRUE(script.endpoints.empty());
  EXPECT_EQ(clock.slept_ms(), 0);
}

// ---- MakeClientIdentity ----

std::string CommonName(X509* cert) {
  char cn[256] = {0};
  int n = X509_NAME_get_text_by_NID(X509_get_subject_name(cert), NID_commonName, cn, sizeof cn);
  return n < 0 ? "" : std::string(cn, static_cast<size_t>(n));
}

TEST(MakeClientIdentityTest, CertificateKeyAndFingerprintBelongTogether) {
  auto id = MakeClientIdentity("node-1");
  ASSERT_TRUE(id.ok()) << id.status().ToString();

  auto cert = CertFromPem(id->cert_pem);
  ASSERT_TRUE(cert.ok()) << cert.status().ToString();
  auto spki_hash = CertSpkiSha256(cert->get());
  ASSERT_TRUE(spki_hash.ok());
  EXPECT_EQ(id->spki_sha256, *spki_hash);
  EXPECT_EQ(id->spki_sha256.size(), 32u);
  EXPECT_EQ(CommonName(cert->get()), "node-1");

  auto key = PrivateKeyFromPem(id->key_pem.view());
  ASSERT_TRUE(key.ok()) << key.status().ToString();
  EXPECT_EQ(EVP_PKEY_get_base_id(key->get()), EVP_PKEY_EC);
  EXPECT_EQ(EVP_PKEY_get_bits(key->get()), 256);
  // The private key is the certificate's: the binding hash is over this key's SPKI.
  auto key_spki = PublicKeyToSpkiDer(key->get());
  ASSERT_TRUE(key_spki.ok());
  EXPECT_EQ(Sha256(*key_spki), id->spki_sha256);
  EXPECT_EQ(X509_check_private_key(cert->get(), key->get()), 1);

  // Self-signed, for TLS client authentication.
  EXPECT_EQ(X509_NAME_cmp(X509_get_subject_name(cert->get()), X509_get_issuer_name(cert->get())),
            0);
  EXPECT_EQ(X509_verify(cert->get(), key->get()), 1);
  EXPECT_NE(X509_get_extended_key_usage(cert->get()) & XKU_SSL_CLIENT, 0u);
}

TEST(MakeClientIdentityTest, EveryCallMakesAFreshKey) {
  auto a = MakeClientIdentity("node-1");
  auto b = MakeClientIdentity("node-1");
  ASSERT_TRUE(a.ok() && b.ok());
  EXPECT_NE(a->spki_sha256, b->spki_sha256);
  EXPECT_FALSE(a->key_pem.Equals(b->key_pem));
}

}  // namespace
}  // namespace berth::agent
