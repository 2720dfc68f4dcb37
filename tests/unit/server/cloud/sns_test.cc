// Amazon SNS notifications (server/cloud/sns.h, server/nodes/sns_endpoint.h): real-format messages
// signed here with a test signing certificate (RSA, PKCS#1 v1.5, SHA-1 for SignatureVersion 1 and
// SHA-256 for 2), the certificate served by a fake https fetcher, node records in an
// in-memory etcd. Checks what is accepted, what is refused and why, and the EC2 state-change
// flow: "running" pre-authorizes one join, "terminated" revokes the node, deletes its token
// and removes its etcd member.
#include "server/cloud/sns.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <openssl/evp.h>

#include <nlohmann/json.hpp>

#include "common/time.h"
#include "server/cloud/ec2_tags.h"
#include "server/join/bootstrap_token.h"
#include "server/metrics.h"
#include "server/nodes/sns_endpoint.h"
#include "tests/fakes/fake_clock.h"
#include "tests/testing/ec2_documents.h"
#include "tests/unit/server/nodes/lifecycle_fixture.h"

namespace berth::server {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;

const std::string kTopic = "arn:aws:sns:eu-west-1:123456789012:berth-ec2";
const std::string kCertUrl =
    "https://sns.eu-west-1.amazonaws.com/SimpleNotificationService-0123456789abcdef.pem";
const std::string kInstance = "i-0123456789abcdef0";

class FakeFetcher : public HttpsFetcher {
 public:
  Result<std::string> Get(const std::string& url,
                          const std::vector<std::string>& request_headers) override {
    gets.push_back(url);
    headers.push_back(request_headers);
    auto it = bodies.find(url);
    if (it == bodies.end()) return Unavailable("GET " + url + ": HTTP 404");
    return it->second;
  }
  std::map<std::string, std::string> bodies;
  std::vector<std::string> gets;
  std::vector<std::vector<std::string>> headers;
};

std::string Base64(const Bytes& b) {
  std::string out(4 * ((b.size() + 2) / 3) + 1, '\0');
  int n = EVP_EncodeBlock(reinterpret_cast<unsigned char*>(out.data()), b.data(),
                          static_cast<int>(b.size()));
  out.resize(static_cast<size_t>(n));
  return out;
}

Bytes SignPkcs1(EVP_PKEY* key, const EVP_MD* md, const std::string& text) {
  std::unique_ptr<EVP_MD_CTX, decltype(&EVP_MD_CTX_free)> ctx(EVP_MD_CTX_new(), EVP_MD_CTX_free);
  EXPECT_EQ(EVP_DigestSignInit(ctx.get(), nullptr, md, nullptr, key), 1);
  size_t len = 0;
  EXPECT_EQ(EVP_DigestSign(ctx.get(), nullptr, &len,
                           reinterpret_cast<const unsigned char*>(text.data()), text.size()),
            1);
  Bytes sig(len);
  EXPECT_EQ(EVP_DigestSign(ctx.get(), sig.data(), &len,
                           reinterpret_cast<const unsigned char*>(text.data()), text.size()),
            1);
  sig.resize(len);
  return sig;
}

// An EventBridge EC2 state change, as SNS carries it in Message.
std::string Ec2Event(const std::string& instance, const std::string& state) {
  return nlohmann::json{{"version", "0"},
                        {"id", "7bf73129-1428-4cd3-a780-95db273d1602"},
                        {"detail-type", "EC2 Instance State-change Notification"},
                        {"source", "aws.ec2"},
                        {"account", "123456789012"},
                        {"time", "2027-01-15T08:00:00Z"},
                        {"region", "eu-west-1"},
                        {"resources", {"arn:aws:ec2:eu-west-1:123456789012:instance/" + instance}},
                        {"detail", {{"instance-id", instance}, {"state", state}}}}
      .dump();
}

class SnsTest : public LifecycleTest {
 protected:
  void SetUp() override {
    LifecycleTest::SetUp();
    now_ = time(nullptr);
    clock_ = HookClock(now_);
    auto key = GenerateRsaKey(2048);
    ASSERT_TRUE(key.ok());
    signing_key_ = std::move(*key);
    auto cert = IssueCert({.common_name = "sns.amazonaws.com"}, signing_key_.get(), nullptr,
                          signing_key_.get());
    ASSERT_TRUE(cert.ok());
    signing_cert_ = std::move(*cert);
    fetcher_.bodies[kCertUrl] = *CertToPem(signing_cert_.get());
    config_.topic_arns = {kTopic};
    config_.cert_sha256 = {HexEncode(Sha256(*CertToDer(signing_cert_.get())))};
    MakeHandler();
  }

  void MakeHandler() {
    auto v = SnsVerifier::Create(config_, &fetcher_, &clock_);
    ASSERT_TRUE(v.ok()) << v.status().ToString();
    verifier_ = std::move(*v);
    handler_ = std::make_unique<SnsHandler>(config_, verifier_.get(), &fetcher_, &store_,
                                            admin_.get(), &clock_, &metrics_);
  }

  // A message as SNS sends it, signed with `key` (the pinned one by default).
  nlohmann::json Message(const std::string& type, const std::string& message, int version = 2,
                         EVP_PKEY* key = nullptr) {
    const std::string id = "msg-" + std::to_string(++messages_);
    nlohmann::json j = {{"Type", type},
                        {"MessageId", id},
                        {"TopicArn", kTopic},
                        {"Message", message},
                        {"Timestamp", Rfc3339(now_)},
                        {"SignatureVersion", std::to_string(version)},
                        {"SigningCertURL", kCertUrl}};
    if (type == "Notification") {
      j["Subject"] = "EC2 state change";
      j["UnsubscribeURL"] = "https://sns.eu-west-1.amazonaws.com/?Action=Unsubscribe";
    } else {
      j["Token"] = "2336412f37fb687f5d51e6e2425c464de12884";
      j["SubscribeURL"] =
          "https://sns.eu-west-1.amazonaws.com/?Action=ConfirmSubscription&TopicArn=" + kTopic +
          "&Token=2336412f37fb687f5d51e6e2425c464de12884";
    }
    Sign(j, version, key);
    return j;
  }

  void Sign(nlohmann::json& j, int version, EVP_PKEY* key = nullptr) {
    nlohmann::json unsigned_copy = j;
    unsigned_copy["Signature"] = "";  // what is signed never includes it
    auto m = ParseSnsMessage(unsigned_copy.dump());
    ASSERT_TRUE(m.ok()) << m.status().ToString();
    auto text = SnsStringToSign(*m);
    ASSERT_TRUE(text.ok());
    j["Signature"] = Base64(SignPkcs1(key != nullptr ? key : signing_key_.get(),
                                      version == 1 ? EVP_sha1() : EVP_sha256(), *text));
  }

  SnsReply Post(const nlohmann::json& j) { return handler_->Handle(j.value("Type", ""), j.dump()); }

  int64_t now_ = 0;
  EvpPkeyPtr signing_key_;
  X509Ptr signing_cert_;
  FakeFetcher fetcher_;
  SnsConfig config_;
  Metrics metrics_;
  std::unique_ptr<SnsVerifier> verifier_;
  std::unique_ptr<SnsHandler> handler_;
  int messages_ = 0;
};

TEST_F(SnsTest, StringToSignIsAwsCanonicalForm) {
  SnsMessage m;
  m.type = "Notification";
  m.message = "hello";
  m.message_id = "id-1";
  m.subject = "subj";
  m.timestamp = "2027-01-15T08:00:00.000Z";
  m.topic_arn = kTopic;
  EXPECT_EQ(*SnsStringToSign(m),
            "Message\nhello\nMessageId\nid-1\nSubject\nsubj\nTimestamp\n"
            "2027-01-15T08:00:00.000Z\nTopicArn\n" +
                kTopic + "\nType\nNotification\n");
  m.subject.reset();
  EXPECT_THAT(*SnsStringToSign(m), HasSubstr("MessageId\nid-1\nTimestamp\n"));
  m.type = "SubscriptionConfirmation";
  m.subscribe_url = "https://x/";
  m.token = "t";
  EXPECT_EQ(*SnsStringToSign(m),
            "Message\nhello\nMessageId\nid-1\nSubscribeURL\nhttps://x/\n"
            "Timestamp\n2027-01-15T08:00:00.000Z\nToken\nt\nTopicArn\n" +
                kTopic + "\nType\nSubscriptionConfirmation\n");
}

TEST_F(SnsTest, SignedNotificationsAreAcceptedVersion2AndVersion1WhenAllowed) {
  SnsReply r = Post(Message("Notification", R"({"hello":"world"})"));
  EXPECT_EQ(r.status, 200) << r.body;
  EXPECT_EQ(r.body, "not an EC2 state change; ignored");
  config_.min_signature_version = 1;
  MakeHandler();
  r = Post(Message("Notification", R"({"hello":"again"})", 1));
  EXPECT_EQ(r.status, 200) << r.body;
  // The certificate was fetched once per verifier (then cached).
  EXPECT_THAT(fetcher_.gets, ElementsAre(kCertUrl, kCertUrl));
}

TEST_F(SnsTest, BadSignatureIsRefused) {
  nlohmann::json j = Message("Notification", Ec2Event(kInstance, "running"));
  j["Message"] = Ec2Event("i-0fedcba9876543210", "running");  // altered after signing
  SnsReply r = Post(j);
  EXPECT_EQ(r.status, 403);
  EXPECT_THAT(r.body, HasSubstr("the signature does not verify (SignatureVersion 2"));
  auto other = GenerateRsaKey(2048);
  r = Post(Message("Notification", Ec2Event(kInstance, "running"), 2, other->get()));
  EXPECT_EQ(r.status, 403);
  EXPECT_THAT(r.body, HasSubstr("the signature does not verify"));
  j = Message("Notification", "x");
  j["Signature"] = "not base64!";
  EXPECT_THAT(Post(j).body, HasSubstr("Signature is not base64"));
  // Nothing was pre-authorized or remembered.
  EXPECT_FALSE(store_.GetValue(Ec2PreauthorizationKey(kInstance))->has_value());
  EXPECT_TRUE(store_.ListValues("sns/seen/")->empty());
  EXPECT_THAT(
      metrics_.Exposition(),
      HasSubstr(
          "berth_sns_messages_total{type=\"Notification\",outcome=\"refused_signature\"} 3\n"));
}

TEST_F(SnsTest, UnpinnedCertificateIsRefusedEvenWithAValidSignature) {
  auto key = GenerateRsaKey(2048);
  auto cert = IssueCert({.common_name = "sns.amazonaws.com"}, key->get(), nullptr, key->get());
  const std::string url = "https://sns.eu-west-1.amazonaws.com/SimpleNotificationService-other.pem";
  fetcher_.bodies[url] = *CertToPem(cert->get());
  nlohmann::json j = Message("Notification", "x");
  j["SigningCertURL"] = url;
  Sign(j, 2, key->get());
  SnsReply r = Post(j);
  EXPECT_EQ(r.status, 403);
  EXPECT_THAT(r.body, HasSubstr("is neither pinned nor issued by a pinned CA"));
}

TEST_F(SnsTest, CertificateUrlOutsideSnsIsNeverFetched) {
  for (const std::string& url :
       {std::string("https://evil.example.com/SimpleNotificationService-1.pem"),
        std::string("http://sns.eu-west-1.amazonaws.com/SimpleNotificationService-1.pem"),
        std::string("https://sns.eu-west-1.amazonaws.com.evil.com/x.pem"),
        std::string("https://sns.eu-west-1.amazonaws.com/cert.txt")}) {
    nlohmann::json j = Message("Notification", "x");
    j["SigningCertURL"] = url;
    Sign(j, 2);
    SnsReply r = Post(j);
    EXPECT_EQ(r.status, 403) << url;
  }
  EXPECT_TRUE(fetcher_.gets.empty());
}

TEST_F(SnsTest, SignatureVersionDowngradeIsRefused) {
  // Correctly signed with SHA-1, but the endpoint requires SignatureVersion 2.
  SnsReply r = Post(Message("Notification", Ec2Event(kInstance, "running"), 1));
  EXPECT_EQ(r.status, 403);
  EXPECT_THAT(r.body, HasSubstr("SignatureVersion 1 is below the minimum 2"));
  // A version-2 message relabelled as version 1 does not verify either way.
  config_.min_signature_version = 1;
  MakeHandler();
  nlohmann::json j = Message("Notification", "x", 2);
  j["SignatureVersion"] = "1";
  EXPECT_THAT(Post(j).body, HasSubstr("the signature does not verify"));
  j["SignatureVersion"] = "3";
  EXPECT_THAT(Post(j).body, HasSubstr("SignatureVersion \"3\" is not 1 or 2"));
  EXPECT_FALSE(store_.GetValue(Ec2PreauthorizationKey(kInstance))->has_value());
}

TEST_F(SnsTest, ReplayIsRefusedAndOldMessagesToo) {
  nlohmann::json j = Message("Notification", Ec2Event(kInstance, "running"));
  EXPECT_EQ(Post(j).status, 200);
  SnsReply again = Post(j);
  EXPECT_EQ(again.status, 409);
  EXPECT_EQ(again.body,
            "message " + j["MessageId"].get<std::string>() + " was already processed (a replay)");
  // An old message (outside SNS's retry window) is refused before any state is kept.
  nlohmann::json old = Message("Notification", "x");
  old["Timestamp"] = Rfc3339(now_ - 7200);
  Sign(old, 2);
  EXPECT_THAT(Post(old).body, HasSubstr("is outside the accepted window"));
  nlohmann::json topic = Message("Notification", "x");
  topic["TopicArn"] = "arn:aws:sns:eu-west-1:123456789012:other";
  Sign(topic, 2);
  EXPECT_EQ(Post(topic).status, 403);
  EXPECT_EQ(handler_->Handle("", "{not json").status, 400);
  EXPECT_EQ(handler_->Handle("SubscriptionConfirmation", j.dump()).status, 400);
}

TEST_F(SnsTest, SubscriptionConfirmationVisitsTheSubscribeUrlOnlyOnAnSnsHost) {
  nlohmann::json j = Message("SubscriptionConfirmation", "You have chosen to subscribe...");
  fetcher_.bodies[j["SubscribeURL"]] = "<ConfirmSubscriptionResponse/>";
  SnsReply r = Post(j);
  EXPECT_EQ(r.status, 200) << r.body;
  EXPECT_EQ(r.body, "subscription to " + kTopic + " confirmed");
  EXPECT_EQ(fetcher_.gets.back(), j["SubscribeURL"]);

  nlohmann::json evil = Message("SubscriptionConfirmation", "x");
  evil["SubscribeURL"] = "https://evil.example.com/?Action=ConfirmSubscription&TopicArn=" + kTopic;
  Sign(evil, 2);
  const size_t gets = fetcher_.gets.size();
  EXPECT_EQ(Post(evil).status, 403);
  EXPECT_EQ(fetcher_.gets.size(), gets);
  // A failed confirmation is answered 503 and forgotten, so SNS's retry is processed.
  nlohmann::json later = Message("SubscriptionConfirmation", "x");
  later["SubscribeURL"] =
      "https://sns.eu-west-1.amazonaws.com/?Action=ConfirmSubscription&TopicArn=" + kTopic +
      "&Token=later";
  Sign(later, 2);
  EXPECT_EQ(Post(later).status, 503);
  fetcher_.bodies[later["SubscribeURL"]] = "<ok/>";
  EXPECT_EQ(Post(later).status, 200);
}

TEST_F(SnsTest, Ec2RunningPreauthorizesOneJoinAndTerminatedRevokesTheNode) {
  // A test key stands in for AWS's, as the region's certificate in the policy.
  testing::TestAwsSigner aws = testing::MakeTestAwsSigner();
  verify::AdmissionPolicy admission{.ec2_preauthorized_only = true};
  admission.ec2_identity.certificates["eu-west-1"] = aws.cert_pem;
  SetPolicy(admission);
  MakeHandler();
  SnsReply r = Post(Message("Notification", Ec2Event(kInstance, "running")));
  ASSERT_EQ(r.status, 200) << r.body;
  EXPECT_THAT(r.body, HasSubstr("instance " + kInstance + " pre-authorized for one join until"));
  auto stored = store_.GetValue(Ec2PreauthorizationKey(kInstance));
  ASSERT_TRUE(stored.ok() && stored->has_value());
  v1::SnsEc2Preauthorization p;
  ASSERT_TRUE(RecordFromJson((*stored)->key, (*stored)->value, &p).ok());
  EXPECT_EQ(p.region(), "eu-west-1");
  EXPECT_EQ(p.account(), "123456789012");
  EXPECT_EQ(p.topic_arn(), kTopic);
  EXPECT_EQ(p.expires_unix(), now_ + 3600);

  // A control plane joins as that instance (an etcd learner, certificates, a record).
  v1::JoinRequest cp = ControlPlane("cp-1", "10.0.0.5");
  cp.set_ec2_instance_id(kInstance);
  *cp.mutable_ec2_identity() = testing::MakeEc2Identity(kInstance, "123456789012", "eu-west-1", aws);
  auto joined = registry_->AdmitJoin(cp, Evidence(kLcAk), "ipv4:10.0.0.5:40000");
  ASSERT_TRUE(joined.ok()) << joined.status().ToString();
  const uint64_t member = joined->etcd->member_id();
  EXPECT_EQ(etcd_.Members().size(), 4u);
  kube_.list_body = R"({"kind":"SecretList","items":[
      {"metadata":{"name":"bootstrap-token-abc123"},"type":"bootstrap.kubernetes.io/token"}]})";

  r = Post(Message("Notification", Ec2Event(kInstance, "stopping")));
  EXPECT_EQ(r.status, 200);
  EXPECT_EQ(Record("cp-1")->state(), v1::NODE_STATE_JOINING);

  r = Post(Message("Notification", Ec2Event(kInstance, "terminated")));
  ASSERT_EQ(r.status, 200) << r.body;
  EXPECT_EQ(r.body, "instance " + kInstance + " terminated; revoked: cp-1");
  auto record = Record("cp-1");
  EXPECT_EQ(record->state(), v1::NODE_STATE_REVOKED);
  EXPECT_THAT(record->revoked_by(), HasSubstr("sns " + kTopic + " message msg-"));
  EXPECT_FALSE(store_.GetValue(Ec2PreauthorizationKey(kInstance))->has_value());
  EXPECT_THAT(
      kube_.requests,
      ElementsAre(
          "GET /api/v1/namespaces/kube-system/secrets?labelSelector=berth.dev%2Fnode%3Dcp-1"
          "%2Capp.kubernetes.io%2Fmanaged-by%3Dberth",
          "DELETE /api/v1/namespaces/kube-system/secrets/bootstrap-token-abc123"));
  EXPECT_EQ(etcd_.Members().size(), 3u);
  for (const auto& m : etcd_.Members()) EXPECT_NE(m.id(), member);
  // Gone for good: the node cannot join again, not even with a new "running" event.
  EXPECT_EQ(Post(Message("Notification", Ec2Event(kInstance, "running"))).status, 200);
  EXPECT_EQ(registry_->AdmitJoin(cp, Evidence(kLcAk), "ipv4:10.0.0.5:40000").status().code(),
            Code::kPermissionDenied);
  const std::string text = metrics_.Exposition();
  EXPECT_THAT(text,
              HasSubstr("berth_ec2_events_total{state=\"running\",action=\"preauthorized\"} 2\n"));
  EXPECT_THAT(text,
              HasSubstr("berth_ec2_events_total{state=\"terminated\",action=\"revoked\"} 1\n"));
}

TEST_F(SnsTest, MalformedEc2EventIsRefusedAndNonEc2EventsAreIgnored) {
  nlohmann::json bad = nlohmann::json::parse(Ec2Event("i-zz", "running"));
  SnsReply r = Post(Message("Notification", bad.dump()));
  EXPECT_EQ(r.status, 400);
  EXPECT_THAT(r.body, HasSubstr("detail.instance-id \"i-zz\" is not an instance ID"));
  nlohmann::json spoofed = nlohmann::json::parse(Ec2Event(kInstance, "running"));
  spoofed["source"] = "custom.app";
  EXPECT_EQ(Post(Message("Notification", spoofed.dump())).status, 400);
  EXPECT_FALSE(store_.GetValue(Ec2PreauthorizationKey(kInstance))->has_value());
}

// ---- instance tags (--ec2-require-tag) ----

class FakeTags : public Ec2TagSource {
 public:
  Result<std::map<std::string, std::string>> Tags(const std::string& region,
                                                  const std::string& instance_id) override {
    asked.push_back(region + "/" + instance_id);
    return answer;
  }
  Result<std::map<std::string, std::string>> answer = std::map<std::string, std::string>{};
  std::vector<std::string> asked;
};

TEST_F(SnsTest, RunningInstancesArePreauthorizedOnlyWithTheRequiredTags) {
  config_.required_tags = {{"berth-cluster", "prod"}};
  MakeHandler();
  FakeTags tags;
  handler_->set_tag_source(&tags);
  tags.answer = std::map<std::string, std::string>{{"berth-cluster", "staging"}, {"Name", "x"}};
  SnsReply r = Post(Message("Notification", Ec2Event(kInstance, "running")));
  EXPECT_EQ(r.status, 200);
  EXPECT_EQ(r.body,
            "instance " + kInstance +
                " is not pre-authorized: its tag berth-cluster is \"staging\", not \"prod\"");
  EXPECT_FALSE(store_.GetValue(Ec2PreauthorizationKey(kInstance))->has_value());
  tags.answer = std::map<std::string, std::string>{{"Name", "x"}};
  EXPECT_THAT(Post(Message("Notification", Ec2Event(kInstance, "running"))).body,
              HasSubstr("its tag berth-cluster is missing"));
  EXPECT_FALSE(store_.GetValue(Ec2PreauthorizationKey(kInstance))->has_value());

  // EC2 unreachable: 503 and the message is forgotten, so SNS's retry is processed.
  nlohmann::json later = Message("Notification", Ec2Event(kInstance, "running"));
  tags.answer = Unavailable("EC2 DescribeTags: timeout");
  EXPECT_EQ(Post(later).status, 503);
  tags.answer = std::map<std::string, std::string>{{"berth-cluster", "prod"}, {"Name", "n1"}};
  r = Post(later);
  EXPECT_EQ(r.status, 200) << r.body;
  auto stored = store_.GetValue(Ec2PreauthorizationKey(kInstance));
  ASSERT_TRUE(stored.ok() && stored->has_value());
  v1::SnsEc2Preauthorization p;
  ASSERT_TRUE(RecordFromJson((*stored)->key, (*stored)->value, &p).ok());
  EXPECT_EQ(p.tags().at("berth-cluster"), "prod");
  EXPECT_EQ(p.tags().at("Name"), "n1");
  EXPECT_EQ(tags.asked.back(), "eu-west-1/" + kInstance);
  EXPECT_THAT(metrics_.Exposition(),
              HasSubstr("berth_ec2_events_total{state=\"running\",action=\"filtered\"} 2\n"));
}

TEST_F(SnsTest, RequiredTagsWithoutATagSourceRefuseEveryInstance) {
  config_.required_tags = {{"berth-cluster", "prod"}};
  MakeHandler();
  EXPECT_EQ(Post(Message("Notification", Ec2Event(kInstance, "running"))).status, 500);
  EXPECT_FALSE(store_.GetValue(Ec2PreauthorizationKey(kInstance))->has_value());
}

TEST(Ec2TagsTest, SigV4MatchesAwsDocumentedExample) {
  // docs.aws.amazon.com, "Signature Calculations for the Authorization Header", GET Object.
  SigV4Request r;
  r.path = "/test.txt";
  r.headers = {
      {"host", "examplebucket.s3.amazonaws.com"},
      {"range", "bytes=0-9"},
      {"x-amz-content-sha256", "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"},
      {"x-amz-date", "20130524T000000Z"}};
  AwsCredentials c;
  c.access_key_id = "AKIAIOSFODNN7EXAMPLE";
  std::string secret = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY";
  c.secret_access_key = SecretBytes::TakeFrom(secret);
  EXPECT_EQ(SigV4Authorization(r, c, "us-east-1", "s3"),
            "AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20130524/us-east-1/s3/aws4_request, "
            "SignedHeaders=host;range;x-amz-content-sha256;x-amz-date, "
            "Signature=f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41");
  EXPECT_EQ(AwsUriEncode("a b/c~d"), "a%20b%2Fc~d");
}

TEST(Ec2TagsTest, DescribeTagsIsSignedAndItsAnswerParsed) {
  FakeFetcher fetcher;
  FakeClock clock(1'369'353'600);  // 2013-05-24T00:00:00Z
  AwsCredentials c;
  c.access_key_id = "AKIAIOSFODNN7EXAMPLE";
  std::string secret = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY";
  c.secret_access_key = SecretBytes::TakeFrom(secret);
  c.session_token = "session-token";
  const std::string url =
      "https://ec2.eu-west-1.amazonaws.com/?Action=DescribeTags&Filter.1.Name=resource-id&"
      "Filter.1.Value.1=" +
      kInstance + "&Version=2016-11-15";
  fetcher.bodies[url] =
      "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
      "<DescribeTagsResponse xmlns=\"http://ec2.amazonaws.com/doc/2016-11-15/\">\n"
      "  <requestId>7a62c49f-347e-4fc4-9331-6e8eEXAMPLE</requestId>\n  <tagSet>\n"
      "    <item><resourceId>" +
      kInstance +
      "</resourceId><resourceType>instance</resourceType>"
      "<key>berth-cluster</key><value>prod &amp; co</value></item>\n"
      "    <item><resourceId>" +
      kInstance +
      "</resourceId><resourceType>instance</resourceType>"
      "<key>empty</key><value/></item>\n  </tagSet>\n</DescribeTagsResponse>\n";
  auto source = MakeEc2TagSource(std::move(c), "", &fetcher, &clock);
  auto tags = source->Tags("eu-west-1", kInstance);
  ASSERT_TRUE(tags.ok()) << tags.status().ToString();
  EXPECT_EQ(*tags,
            (std::map<std::string, std::string>{{"berth-cluster", "prod & co"}, {"empty", ""}}));
  ASSERT_EQ(fetcher.headers.size(), 1u);
  const auto& h = fetcher.headers[0];
  ASSERT_EQ(h.size(), 3u);
  EXPECT_THAT(h[0], ::testing::StartsWith(
                        "Authorization: AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20130524/"
                        "eu-west-1/ec2/aws4_request, SignedHeaders=host;x-amz-date;"
                        "x-amz-security-token, Signature="));
  EXPECT_EQ(h[1], "X-Amz-Date: 20130524T000000Z");
  EXPECT_EQ(h[2], "X-Amz-Security-Token: session-token");
  EXPECT_EQ(source->Tags("us-east-1", kInstance).status().code(), Code::kUnavailable);
  EXPECT_EQ(ParseDescribeTagsResponse("<Error/>").status().code(), Code::kInvalidArgument);
  EXPECT_EQ(ParseRequiredTags({"a=b", "c="})->at("c"), "");
  EXPECT_EQ(ParseRequiredTags({"=b"}).status().code(), Code::kInvalidArgument);
}

TEST(SnsVerifierTest, ConfigurationWithoutAPinIsRefused) {
  FakeClock clock(kLcNow);
  SnsConfig config;
  config.topic_arns = {kTopic};
  EXPECT_THAT(SnsVerifier::Create(config, nullptr, &clock).status().message(),
              HasSubstr("needs pinned signing certificates"));
  config.cert_sha256 = {"abc"};
  EXPECT_EQ(SnsVerifier::Create(config, nullptr, &clock).status().code(), Code::kInvalidArgument);
  config.cert_sha256 = {std::string(64, 'a')};
  config.min_signature_version = 0;
  EXPECT_EQ(SnsVerifier::Create(config, nullptr, &clock).status().code(), Code::kInvalidArgument);
}

}  // namespace
}  // namespace berth::server
