#include "core/base/private_dir.h"

#include <fcntl.h>
#include <pwd.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <string>

#include <gtest/gtest.h>

namespace envelope {
namespace {

// A fresh 0700 directory of ours to play in (the parent of the paths tried).
class PrivateDirTest : public ::testing::Test {
 protected:
  void SetUp() override {
    const char* tmp = std::getenv("TMPDIR");
    std::string tmpl = std::string(tmp != nullptr && tmp[0] == '/' ? tmp : "/tmp") +
                       "/private-dir-test-XXXXXX";
    ASSERT_NE(::mkdtemp(tmpl.data()), nullptr);
    root_ = tmpl;
  }
  void TearDown() override { std::filesystem::remove_all(root_); }
  mode_t ModeOf(const std::string& p) {
    struct stat st;
    EXPECT_EQ(::lstat(p.c_str(), &st), 0) << p;
    return st.st_mode & 07777;
  }
  std::string root_;
};

TEST_F(PrivateDirTest, CreatesA0700DirectoryAndA0600File) {
  const std::string dir = root_ + "/logs";
  auto d = OpenPrivateDirectory(dir);
  ASSERT_TRUE(d.ok()) << d.status().ToString();
  EXPECT_EQ(ModeOf(dir), 0700u);
  auto f = OpenPrivateFileForAppend(d->get(), "x.log");
  ASSERT_TRUE(f.ok()) << f.status().ToString();
  EXPECT_EQ(ModeOf(dir + "/x.log"), 0600u);
  EXPECT_TRUE(OpenPrivateDirectory(dir).ok());  // again: it exists and is fine
  EXPECT_TRUE(OpenPrivateFileForAppend(d->get(), "x.log").ok());
}

TEST_F(PrivateDirTest, PlantedSymlinkIsRefusedNotFollowed) {
  const std::string victim = root_ + "/victim";
  ASSERT_EQ(::mkdir(victim.c_str(), 0755), 0);
  ASSERT_EQ(::chmod(victim.c_str(), 0755), 0);
  ASSERT_EQ(::symlink(victim.c_str(), (root_ + "/logs").c_str()), 0);
  auto d = OpenPrivateDirectory(root_ + "/logs");
  EXPECT_EQ(d.status().code(), StatusCode::kPermissionDenied) << d.status().ToString();
  EXPECT_EQ(ModeOf(victim), 0755u);
  EXPECT_TRUE(std::filesystem::is_empty(victim));
}

TEST_F(PrivateDirTest, AnotherUsersDirectoryIsRefused) {
  if (::geteuid() != 0) GTEST_SKIP() << "needs root to chown";
  const struct passwd* nobody = ::getpwnam("nobody");
  ASSERT_NE(nobody, nullptr);
  const std::string dir = root_ + "/logs";
  ASSERT_EQ(::mkdir(dir.c_str(), 0700), 0);
  ASSERT_EQ(::chown(dir.c_str(), nobody->pw_uid, nobody->pw_gid), 0);
  auto d = OpenPrivateDirectory(dir);
  EXPECT_EQ(d.status().code(), StatusCode::kPermissionDenied);
  EXPECT_NE(d.status().message().find("owned by uid"), std::string::npos);
}

TEST_F(PrivateDirTest, GroupOrOtherBitsAreRefused) {
  const std::string dir = root_ + "/logs";
  ASSERT_EQ(::mkdir(dir.c_str(), 0700), 0);
  ASSERT_EQ(::chmod(dir.c_str(), 0750), 0);
  EXPECT_EQ(OpenPrivateDirectory(dir).status().code(), StatusCode::kPermissionDenied);
  EXPECT_EQ(ModeOf(dir), 0750u);  // reported, not silently changed
}

TEST_F(PrivateDirTest, ParentWritableByOthersMustBeSticky) {
  const std::string parent = root_ + "/shared";
  ASSERT_EQ(::mkdir(parent.c_str(), 0700), 0);
  ASSERT_EQ(::chmod(parent.c_str(), 0777), 0);
  EXPECT_EQ(OpenPrivateDirectory(parent + "/logs").status().code(),
            StatusCode::kPermissionDenied);
  ASSERT_EQ(::chmod(parent.c_str(), 01777), 0);  // like /tmp
  EXPECT_TRUE(OpenPrivateDirectory(parent + "/logs").ok());
}

TEST_F(PrivateDirTest, EveryDirectoryAboveIsChecked) {
  // The parent is ours and private, but the one above it is writable by
  // others: they could rename the parent away with our directory in it.
  const std::string shared = root_ + "/shared";
  const std::string parent = shared + "/mine";
  ASSERT_EQ(::mkdir(shared.c_str(), 0700), 0);
  ASSERT_EQ(::mkdir(parent.c_str(), 0700), 0);
  ASSERT_EQ(::chmod(shared.c_str(), 0777), 0);
  auto d = OpenPrivateDirectory(parent + "/logs");
  EXPECT_EQ(d.status().code(), StatusCode::kPermissionDenied) << d.status().ToString();
  EXPECT_NE(d.status().message().find(shared + " is writable by group or others"),
            std::string::npos)
      << d.status().ToString();
  EXPECT_FALSE(std::filesystem::exists(parent + "/logs"));  // refused before creating
  ASSERT_EQ(::chmod(shared.c_str(), 01777), 0);
  EXPECT_TRUE(OpenPrivateDirectory(parent + "/logs").ok());
}

TEST_F(PrivateDirTest, PlantedFilesAreRefused) {
  auto d = OpenPrivateDirectory(root_ + "/logs");
  ASSERT_TRUE(d.ok());
  const std::string target = root_ + "/target";
  ASSERT_EQ(::close(::open(target.c_str(), O_WRONLY | O_CREAT, 0644)), 0);
  // A symlink to a file elsewhere: never opened through.
  ASSERT_EQ(::symlink(target.c_str(), (root_ + "/logs/a.log").c_str()), 0);
  EXPECT_EQ(OpenPrivateFileForAppend(d->get(), "a.log").status().code(),
            StatusCode::kPermissionDenied);
  // A hard link to it, or a file others can read: refused too.
  ASSERT_EQ(::link(target.c_str(), (root_ + "/logs/b.log").c_str()), 0);
  EXPECT_FALSE(OpenPrivateFileForAppend(d->get(), "b.log").ok());
  ASSERT_EQ(::close(::open((root_ + "/logs/c.log").c_str(), O_WRONLY | O_CREAT, 0600)), 0);
  ASSERT_EQ(::chmod((root_ + "/logs/c.log").c_str(), 0644), 0);
  EXPECT_FALSE(OpenPrivateFileForAppend(d->get(), "c.log").ok());
  EXPECT_EQ(std::filesystem::file_size(target), 0u);
}

}  // namespace
}  // namespace envelope
