#include "core/base/path_trust.h"

#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>

#include <filesystem>
#include <fstream>
#include <string>

#include <gtest/gtest.h>

namespace envelope {
namespace {

// The one StrictModes walk, tested here for every rule; its callers
// (Volume::Open, CheckSocketDirectory, OpenPrivateDirectory) test their use
// of it in their own tests. Paths live in a fresh 0700 directory in /tmp,
// which is sticky and world-writable: accepted above the path.
class PathTrustTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/path-trust-test-XXXXXX";
    ASSERT_NE(::mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
    file_ = dir_ + "/envelopefs.conf";
    std::ofstream(file_) << "{}";
    ASSERT_EQ(::chmod(file_.c_str(), 0400), 0);
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }
  Status File(const std::string& p) {
    return CheckNotReplaceable(p, ::geteuid(), PathKind::kRegularFile);
  }
  Status Dir(const std::string& p) {
    return CheckNotReplaceable(p, ::geteuid(), PathKind::kDirectory);
  }
  std::string dir_, file_;
};

TEST_F(PathTrustTest, OwnedByCallerAndNotWritableByOthersPasses) {
  // /tmp is writable by all but sticky: accepted above the path.
  EXPECT_TRUE(File(file_).ok()) << File(file_).ToString();
  EXPECT_TRUE(Dir(dir_).ok()) << Dir(dir_).ToString();
  EXPECT_TRUE(Dir("/").ok()) << Dir("/").ToString();
  // Repeated and trailing slashes name the same path.
  EXPECT_TRUE(Dir(dir_ + "//").ok());
  EXPECT_TRUE(File("/" + file_).ok());
}

TEST_F(PathTrustTest, WritableDirectoryAboveFailsUnlessSticky) {
  ASSERT_EQ(::chmod(dir_.c_str(), 0777), 0);
  Status s = File(file_);
  EXPECT_EQ(s.code(), StatusCode::kFailedPrecondition);
  EXPECT_NE(s.message().find("writable by group or others"), std::string::npos) << s.ToString();
  EXPECT_NE(s.message().find(dir_ + " is"), std::string::npos) << s.ToString();
  ASSERT_EQ(::chmod(dir_.c_str(), 01777), 0);  // sticky: others cannot replace the file
  EXPECT_TRUE(File(file_).ok());
  // Group-writable counts as well.
  ASSERT_EQ(::chmod(dir_.c_str(), 0770), 0);
  EXPECT_EQ(File(file_).code(), StatusCode::kFailedPrecondition);
}

TEST_F(PathTrustTest, EveryAncestorIsWalkedNotJustTheParent) {
  const std::string mid = dir_ + "/a";
  const std::string leaf = mid + "/b";
  ASSERT_EQ(::mkdir(mid.c_str(), 0755), 0);
  ASSERT_EQ(::mkdir(leaf.c_str(), 0700), 0);
  ASSERT_EQ(::chmod(dir_.c_str(), 0777), 0);  // the grandparent, not sticky
  Status s = Dir(leaf);
  EXPECT_EQ(s.code(), StatusCode::kFailedPrecondition) << s.ToString();
  EXPECT_NE(s.message().find(dir_ + " is writable by group or others and not sticky"),
            std::string::npos)
      << s.ToString();
  EXPECT_TRUE(CheckDirectoriesAbove(leaf, ::geteuid()).code() ==
              StatusCode::kFailedPrecondition);
  ASSERT_EQ(::chmod(dir_.c_str(), 0700), 0);
  EXPECT_TRUE(Dir(leaf).ok());
}

TEST_F(PathTrustTest, WritableLeafFailsEvenIfSticky) {
  ASSERT_EQ(::chmod(file_.c_str(), 0666), 0);
  EXPECT_EQ(File(file_).code(), StatusCode::kFailedPrecondition);
  // A sticky directory lets others add entries next to ours.
  for (mode_t mode : {0770, 0707, 01777}) {
    ASSERT_EQ(::chmod(dir_.c_str(), mode), 0);
    Status s = Dir(dir_);
    EXPECT_EQ(s.code(), StatusCode::kFailedPrecondition) << std::oct << mode;
    EXPECT_NE(s.message().find("writable by group or others"), std::string::npos)
        << s.ToString();
  }
}

TEST_F(PathTrustTest, SymlinksAreRefusedNeverFollowed) {
  const std::string link = dir_ + "/link.conf";
  ASSERT_EQ(::symlink(file_.c_str(), link.c_str()), 0);
  Status s = File(link);
  EXPECT_EQ(s.code(), StatusCode::kFailedPrecondition);
  EXPECT_NE(s.message().find("symlink"), std::string::npos) << s.ToString();
  // A symlinked directory on the way, too.
  const std::string dlink = dir_ + "-link";
  ASSERT_EQ(::symlink(dir_.c_str(), dlink.c_str()), 0);
  Status d = File(dlink + "/envelopefs.conf");
  ::unlink(dlink.c_str());
  EXPECT_EQ(d.code(), StatusCode::kFailedPrecondition) << d.ToString();
  EXPECT_NE(d.message().find(dlink + " is a symlink"), std::string::npos) << d.ToString();
}

TEST_F(PathTrustTest, WrongKindFails) {
  EXPECT_EQ(Dir(file_).code(), StatusCode::kFailedPrecondition);
  EXPECT_NE(Dir(file_).message().find("is not a directory"), std::string::npos);
  EXPECT_EQ(File(dir_).code(), StatusCode::kFailedPrecondition);
  EXPECT_NE(File(dir_).message().find("is not a regular file"), std::string::npos);
  // A FIFO is neither.
  const std::string fifo = dir_ + "/fifo";
  ASSERT_EQ(::mkfifo(fifo.c_str(), 0600), 0);
  EXPECT_EQ(File(fifo).code(), StatusCode::kFailedPrecondition);
}

TEST_F(PathTrustTest, OwnedByAnotherUserFails) {
  if (::geteuid() != 0) GTEST_SKIP() << "needs root to give the file away";
  ASSERT_EQ(::chown(file_.c_str(), 65534, 65534), 0);
  Status s = File(file_);
  EXPECT_EQ(s.code(), StatusCode::kFailedPrecondition);
  EXPECT_NE(s.message().find("belongs to uid 65534"), std::string::npos) << s.ToString();
  // That user may trust it; root-owned directories above are fine for anyone.
  EXPECT_TRUE(CheckNotReplaceable(file_, 65534, PathKind::kRegularFile).ok());
  // Another user's directory above fails too.
  ASSERT_EQ(::chown(file_.c_str(), 0, 0), 0);
  ASSERT_EQ(::chown(dir_.c_str(), 65534, 65534), 0);
  s = File(file_);
  EXPECT_EQ(s.code(), StatusCode::kFailedPrecondition);
  EXPECT_NE(s.message().find(dir_ + " belongs to uid 65534"), std::string::npos) << s.ToString();
}

TEST_F(PathTrustTest, MissingOrMalformedPaths) {
  Status missing = File(dir_ + "/missing");
  EXPECT_EQ(missing.code(), StatusCode::kIoError) << missing.ToString();
  EXPECT_EQ(missing.sys_errno(), ENOENT);
  for (const std::string& bad : {std::string(""), std::string("relative/path"),
                                 dir_ + "/../" + dir_.substr(5), dir_ + "/./envelopefs.conf"}) {
    EXPECT_EQ(File(bad).code(), StatusCode::kInvalidArgument) << bad;
    EXPECT_EQ(CheckDirectoriesAbove(bad, ::geteuid()).code(), StatusCode::kInvalidArgument)
        << bad;
  }
}

TEST_F(PathTrustTest, DirectoriesAboveIgnoreThePathItself) {
  // For a path about to be created, or checked by its caller through an fd.
  EXPECT_TRUE(CheckDirectoriesAbove(dir_ + "/not-yet", ::geteuid()).ok());
  ASSERT_EQ(::chmod(file_.c_str(), 0666), 0);
  EXPECT_TRUE(CheckDirectoriesAbove(file_, ::geteuid()).ok());
  EXPECT_TRUE(CheckDirectoriesAbove("/", ::geteuid()).ok());
}

}  // namespace
}  // namespace envelope
