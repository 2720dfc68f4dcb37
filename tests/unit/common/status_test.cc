// Status, Result and the two places that turn foreign codes into berth's: errno (here) and
// the retry class every caller decides from.
#include "common/status.h"

#include <gtest/gtest.h>

#include <cerrno>
#include <cstring>
#include <memory>

namespace berth {
namespace {

TEST(StatusTest, DefaultIsOkAndPrintsOk) {
  Status st;
  EXPECT_TRUE(st.ok());
  EXPECT_EQ(st.code(), Code::kOk);
  EXPECT_EQ(st.ToString(), "OK");
  EXPECT_TRUE(OkStatus().ok());
}

TEST(StatusTest, ToStringAndWithContext) {
  Status st = PermissionDenied("PCR sha256:4 differs");
  EXPECT_FALSE(st.ok());
  EXPECT_EQ(st.ToString(), "PERMISSION_DENIED: PCR sha256:4 differs");
  Status wrapped = st.WithContext("TPM quote");
  EXPECT_EQ(wrapped.code(), Code::kPermissionDenied);
  EXPECT_EQ(wrapped.message(), "TPM quote: PCR sha256:4 differs");
  // Context on success is a no-op: no message appears on an OK status.
  EXPECT_EQ(OkStatus().WithContext("ignored").ToString(), "OK");
}

TEST(StatusTest, EveryCodeHasItsGrpcName) {
  const std::pair<Code, const char*> names[] = {
      {Code::kOk, "OK"},
      {Code::kCancelled, "CANCELLED"},
      {Code::kUnknown, "UNKNOWN"},
      {Code::kInvalidArgument, "INVALID_ARGUMENT"},
      {Code::kDeadlineExceeded, "DEADLINE_EXCEEDED"},
      {Code::kNotFound, "NOT_FOUND"},
      {Code::kAlreadyExists, "ALREADY_EXISTS"},
      {Code::kPermissionDenied, "PERMISSION_DENIED"},
      {Code::kResourceExhausted, "RESOURCE_EXHAUSTED"},
      {Code::kFailedPrecondition, "FAILED_PRECONDITION"},
      {Code::kAborted, "ABORTED"},
      {Code::kOutOfRange, "OUT_OF_RANGE"},
      {Code::kUnimplemented, "UNIMPLEMENTED"},
      {Code::kInternal, "INTERNAL"},
      {Code::kUnavailable, "UNAVAILABLE"},
      {Code::kDataLoss, "DATA_LOSS"},
      {Code::kUnauthenticated, "UNAUTHENTICATED"},
  };
  int number = 0;
  for (const auto& [code, name] : names) {
    EXPECT_EQ(CodeName(code), name);
    // The numbers are gRPC's (the table is in gRPC's order), so the server maps one to one.
    EXPECT_EQ(static_cast<int>(code), number++) << name;
  }
}

TEST(StatusTest, ConstructorsSetTheirCode) {
  EXPECT_EQ(InvalidArgument("x").code(), Code::kInvalidArgument);
  EXPECT_EQ(NotFound("x").code(), Code::kNotFound);
  EXPECT_EQ(AlreadyExists("x").code(), Code::kAlreadyExists);
  EXPECT_EQ(PermissionDenied("x").code(), Code::kPermissionDenied);
  EXPECT_EQ(FailedPrecondition("x").code(), Code::kFailedPrecondition);
  EXPECT_EQ(Unavailable("x").code(), Code::kUnavailable);
  EXPECT_EQ(Internal("x").code(), Code::kInternal);
  EXPECT_EQ(Aborted("x").code(), Code::kAborted);
  EXPECT_EQ(DataLoss("x").code(), Code::kDataLoss);
  EXPECT_EQ(DeadlineExceeded("x").code(), Code::kDeadlineExceeded);
  EXPECT_EQ(ResourceExhausted("x").code(), Code::kResourceExhausted);
  EXPECT_EQ(Unauthenticated("x").code(), Code::kUnauthenticated);
}

TEST(ErrnoStatusTest, MapsErrnoToCodesWithTheSystemMessage) {
  struct Case {
    int err;
    Code code;
  } cases[] = {
      {ENOENT, Code::kNotFound},         {ENOTDIR, Code::kNotFound},
      {EACCES, Code::kPermissionDenied}, {EPERM, Code::kPermissionDenied},
      {EEXIST, Code::kAlreadyExists},    {EINTR, Code::kUnavailable},
      {EAGAIN, Code::kUnavailable},      {ECONNREFUSED, Code::kUnavailable},
      {ETIMEDOUT, Code::kUnavailable},   {EIO, Code::kInternal},
      {ENOSPC, Code::kInternal},         {EISDIR, Code::kInternal},
  };
  for (const auto& c : cases) {
    Status st = ErrnoStatus("open(/x)", c.err);
    EXPECT_EQ(st.code(), c.code) << c.err;
    EXPECT_EQ(st.message(), std::string("open(/x): ") + std::strerror(c.err));
  }
  EXPECT_EQ(ErrnoStatus("open(/x)", ENOENT).message(), "open(/x): No such file or directory");
}

TEST(ErrnoStatusTest, UsesErrnoWhenNotGiven) {
  errno = EEXIST;
  EXPECT_EQ(ErrnoStatus("mkdir(/d)").ToString(), "ALREADY_EXISTS: mkdir(/d): File exists");
}

TEST(RetryTest, OnlyTransientCodesRetry) {
  for (Code code :
       {Code::kUnavailable, Code::kDeadlineExceeded, Code::kResourceExhausted, Code::kAborted}) {
    EXPECT_TRUE(IsRetryable(Status(code, "m"))) << CodeName(code);
  }
  for (Code code :
       {Code::kOk, Code::kCancelled, Code::kUnknown, Code::kInvalidArgument, Code::kNotFound,
        Code::kAlreadyExists, Code::kPermissionDenied, Code::kFailedPrecondition, Code::kOutOfRange,
        Code::kUnimplemented, Code::kInternal, Code::kDataLoss, Code::kUnauthenticated}) {
    EXPECT_FALSE(IsRetryable(Status(code, "m"))) << CodeName(code);
  }
  // errno's transient failures come out retryable, so callers need not look at errno.
  EXPECT_TRUE(IsRetryable(ErrnoStatus("connect", ECONNREFUSED)));
  EXPECT_FALSE(IsRetryable(ErrnoStatus("open", ENOENT)));
}

Result<int> Half(int x) {
  if (x % 2 != 0) return InvalidArgument(std::to_string(x) + " is odd");
  return x / 2;
}

Result<int> Quarter(int x) {
  BERTH_ASSIGN_OR_RETURN(int half, Half(x));
  BERTH_ASSIGN_OR_RETURN(int quarter, Half(half));
  return quarter;
}

Status CheckEven(int x) {
  BERTH_RETURN_IF_ERROR(Half(x).status());
  return OkStatus();
}

TEST(ResultTest, ValueOrStatus) {
  Result<int> r = Half(8);
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(*r, 4);
  EXPECT_TRUE(r.status().ok());
  Result<int> bad = Half(3);
  EXPECT_FALSE(bad.ok());
  EXPECT_EQ(bad.status().ToString(), "INVALID_ARGUMENT: 3 is odd");
}

TEST(ResultTest, MacrosReturnTheFirstError) {
  EXPECT_EQ(*Quarter(12), 3);
  EXPECT_EQ(Quarter(6).status().message(), "3 is odd");
  EXPECT_EQ(Quarter(5).status().message(), "5 is odd");
  EXPECT_TRUE(CheckEven(2).ok());
  EXPECT_EQ(CheckEven(7).ToString(), "INVALID_ARGUMENT: 7 is odd");
}

TEST(ResultTest, HoldsMoveOnlyValues) {
  Result<std::unique_ptr<int>> r = std::make_unique<int>(5);
  ASSERT_TRUE(r.ok());
  std::unique_ptr<int> p = std::move(r).value();
  EXPECT_EQ(*p, 5);
}

}  // namespace
}  // namespace berth
