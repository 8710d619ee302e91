#include "core/base/status.h"

#include <cerrno>

#include <gtest/gtest.h>

namespace envelope {
namespace {

TEST(StatusTest, DefaultIsOk) {
  Status s;
  EXPECT_TRUE(s.ok());
  EXPECT_EQ(s.ToString(), "OK");
  EXPECT_EQ(ToErrno(s), 0);
}

TEST(StatusTest, CarriesCodeMessageAndContext) {
  Status s = Status::Corruption("chunk 3 failed").WithContext("file a.txt");
  EXPECT_EQ(s.code(), StatusCode::kCorruption);
  EXPECT_EQ(s.ToString(), "Corruption: file a.txt: chunk 3 failed");
}

TEST(StatusTest, ErrnoMapping) {
  EXPECT_EQ(ToErrno(Status::Corruption("x")), EIO);
  EXPECT_EQ(ToErrno(Status::NotFound("x")), ENOENT);
  EXPECT_EQ(ToErrno(Status::IoError("x", ENOSPC)), ENOSPC);
  EXPECT_EQ(ToErrno(Status::IoError("x", 0)), EIO);
  EXPECT_EQ(ToErrno(Status::Unavailable("x")), EIO);
  errno = EDQUOT;
  Status s = Status::FromErrno("pwrite");
  EXPECT_EQ(s.sys_errno(), EDQUOT);
  EXPECT_EQ(s.WithContext("ctx").sys_errno(), EDQUOT);
}

StatusOr<int> Half(int v) {
  if (v % 2 != 0) return Status::InvalidArgument("odd");
  return v / 2;
}

Status Quarter(int v, int* out) {
  ENVELOPE_ASSIGN_OR_RETURN(int h, Half(v));
  ENVELOPE_ASSIGN_OR_RETURN(*out, Half(h));
  return Status::Ok();
}

TEST(StatusOrTest, ValueAndErrorPropagation) {
  int out = 0;
  EXPECT_TRUE(Quarter(8, &out).ok());
  EXPECT_EQ(out, 2);
  Status s = Quarter(6, &out);
  EXPECT_EQ(s.code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(s.message(), "odd");
}

TEST(StatusOrTest, OkStatusIsABug) {
  StatusOr<int> v(Status::Ok());
  EXPECT_FALSE(v.ok());
  EXPECT_EQ(v.status().code(), StatusCode::kInternal);
}

}  // namespace
}  // namespace envelope
