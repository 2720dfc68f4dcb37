// The audit line's one format (server/audit.h): its fields, its escaping, and that whatever a
// caller sends stays one line that forges no field.
#include "common/audit.h"

#include <gtest/gtest.h>
#include <spdlog/sinks/ostream_sink.h>
#include <spdlog/spdlog.h>

#include <sstream>

namespace berth {
namespace {

TEST(AuditTest, FieldsInOrderBareWhenSafeQuotedWhenAsked) {
  AuditLine line("IssueJoinTicket");
  line.Add("node", "w-1").Add("peer", "ipv4:10.0.0.7:51200").Add("disk_uuid", "");
  line.Quoted("rule", "pcrs sha256:0,7").Fields("record=joined joins=2");
  EXPECT_EQ(line.Format("granted", OkStatus()),
            "audit call=IssueJoinTicket decision=granted node=w-1 peer=ipv4:10.0.0.7:51200 "
            "disk_uuid=- rule=\"pcrs sha256:0,7\" record=joined joins=2");
}

TEST(AuditTest, ARefusalEndsWithItsCodeAndQuotedReason) {
  AuditLine line("RevokeNode");
  line.Quoted("operator", "CN=alice").Add("node", "w-1");
  EXPECT_EQ(line.Format("failed", NotFound("no node named w-1 is recorded")),
            "audit call=RevokeNode decision=failed operator=\"CN=alice\" node=w-1 "
            "code=NOT_FOUND reason=\"no node named w-1 is recorded\"");
  EXPECT_EQ(AuditLine("X").Format("refused", InvalidArgument("bad")),
            "audit call=X decision=refused code=INVALID_ARGUMENT reason=\"bad\"");
}

// The node name of a refused call is whatever the caller sent: before one owner wrote these
// lines, join_logic.cc printed it raw, and a name with a newline wrote a second audit line.
TEST(AuditTest, WhatACallerSendsCannotStartALineOrForgeAField) {
  const std::string forged =
      "w1\naudit call=IssueJoinTicket decision=granted node=cp-1 \"x\\y\"\x01\x7f";
  AuditLine line("IssueJoinTicket");
  line.Add("node", forged);
  const std::string out = line.Format("refused", InvalidArgument("name \"" + forged + "\""));
  EXPECT_EQ(out.find('\n'), std::string::npos);
  EXPECT_EQ(out,
            "audit call=IssueJoinTicket decision=refused node=\"w1\\naudit "
            "call=IssueJoinTicket decision=granted node=cp-1 \\\"x\\\\y\\\"\\x01\\x7f\" "
            "code=INVALID_ARGUMENT reason=\"name \\\"w1\\naudit call=IssueJoinTicket "
            "decision=granted node=cp-1 \\\"x\\\\y\\\"\\x01\\x7f\\\"\"");
  EXPECT_EQ(AuditValue("a b"), "\"a b\"");
  EXPECT_EQ(AuditValue("a=b"), "a=b");
  EXPECT_EQ(AuditValue(""), "\"\"");
  EXPECT_EQ(AuditValue("tab\there", true), "\"tab\\there\"");
}

TEST(AuditTest, ALongValueIsCutAndSaysSo) {
  const std::string body(4000, 'a');
  const std::string v = AuditValue(body);
  EXPECT_EQ(v, "\"" + std::string(kMaxAuditValue, 'a') + "...\"");
  EXPECT_EQ(AuditValue(std::string(kMaxAuditValue, 'a')), std::string(kMaxAuditValue, 'a'));
}

TEST(AuditTest, GrantsAreInfoRefusalsAndLoudGrantsAreWarnings) {
  std::ostringstream out;
  auto sink = std::make_shared<spdlog::sinks::ostream_sink_mt>(out);
  sink->set_pattern("%l %v");
  auto previous = spdlog::default_logger();
  spdlog::set_default_logger(std::make_shared<spdlog::logger>("audit-test", sink));
  AuditLine("A").Add("node", "n").Log(OkStatus());
  AuditLine("B").Log(PermissionDenied("no"), "granted", "refused");
  AuditLine("C").Log(OkStatus(), "granted", "refused", /*loud=*/true);
  AuditLine("D").Log(OkStatus(), "pending");
  spdlog::set_default_logger(previous);
  EXPECT_EQ(out.str(),
            "info audit call=A decision=granted node=n\n"
            "warning audit call=B decision=refused code=PERMISSION_DENIED reason=\"no\"\n"
            "warning audit call=C decision=granted\n"
            "info audit call=D decision=pending\n");
}

}  // namespace
}  // namespace berth
