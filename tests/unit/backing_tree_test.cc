// The backing-tree module on a temporary directory: every attack a user who
// owns backing objects could try (planted symlinks, FIFOs, swapped names)
// must fail with an error, at once, and touch nothing outside.
#include "fs/backing_tree.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <pwd.h>
#include <stdio.h>
#include <sys/stat.h>
#include <unistd.h>

#include <string>

#include "tests/unit/test_files.h"

namespace envelope::fs::backing {
namespace {

using testing::TempDir;

class BackingTreeTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_EQ(::mkdir(Path("root").c_str(), 0700), 0);
    ASSERT_EQ(::mkdir(Path("root/d").c_str(), 0700), 0);
    ASSERT_EQ(::mkdir(Path("outside").c_str(), 0700), 0);
    WriteFile(Path("outside/secret"), "root only", 0600);
    auto root = OpenRoot(Path("root"));
    ASSERT_TRUE(root.ok());
    root_ = std::move(*root);
    auto d = OpenSubdirPath(root_.get(), "d");
    ASSERT_TRUE(d.ok());
    dir_ = std::move(*d);
  }

  std::string Path(const std::string& rel) const { return tmp_.File(rel); }

  static void WriteFile(const std::string& path, const std::string& text, mode_t mode) {
    int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode);
    ASSERT_GE(fd, 0);
    ASSERT_EQ(::write(fd, text.data(), text.size()), static_cast<ssize_t>(text.size()));
    ::close(fd);
    ASSERT_EQ(::chmod(path.c_str(), mode), 0);
  }

  static std::string ReadFile(const std::string& path) {
    int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) return "<missing>";
    char buf[256];
    ssize_t n = ::read(fd, buf, sizeof(buf));
    ::close(fd);
    return std::string(buf, n > 0 ? static_cast<size_t>(n) : 0);
  }

  static mode_t ModeOf(const std::string& path) {
    struct stat st;
    EXPECT_EQ(::stat(path.c_str(), &st), 0);
    return st.st_mode & 07777;
  }

  TempDir tmp_;
  UniqueFd root_;
  UniqueFd dir_;
};

TEST_F(BackingTreeTest, MultiComponentPathsRefuseSymlinkedDirectories) {
  ASSERT_EQ(::symlink(Path("outside").c_str(), Path("root/link").c_str()), 0);
  auto file = OpenFileBeneath(root_.get(), "link/secret", O_RDWR);
  EXPECT_FALSE(file.ok());
  EXPECT_EQ(ToErrno(file.status()), EIO) << file.status().ToString();
  EXPECT_FALSE(OpenDirBeneath(root_.get(), "link").ok());
  // A relative escape is refused as well.
  EXPECT_FALSE(OpenFileBeneath(root_.get(), "../outside/secret", O_RDONLY).ok());
  // A real path beneath the root works.
  WriteFile(Path("root/d/f"), "data", 0600);
  EXPECT_TRUE(OpenFileBeneath(root_.get(), "d/f", O_RDONLY).ok());
  EXPECT_TRUE(OpenDirBeneath(root_.get(), "d").ok());
  EXPECT_TRUE(OpenDirBeneath(root_.get(), ".").ok());
}

TEST_F(BackingTreeTest, NamesAreSingleComponents) {
  EXPECT_FALSE(OpenRegular(dir_.get(), "../../outside/secret", O_RDONLY).ok());
  EXPECT_FALSE(OpenRegular(dir_.get(), "..", O_RDONLY).ok());
  EXPECT_FALSE(Unlink(dir_.get(), "a/b").ok());
  EXPECT_FALSE(ReadSmallFile(dir_.get(), "", 16).ok());
}

TEST_F(BackingTreeTest, PlantedFifoSideFileFailsAtOnce) {
  ASSERT_EQ(::mkfifo(Path("root/d/.envelopefs.dirid").c_str(), 0666), 0);
  // Without O_NONBLOCK this open would wait for a writer forever.
  auto id = ReadSmallFile(dir_.get(), ".envelopefs.dirid", 16);
  ASSERT_FALSE(id.ok());
  EXPECT_EQ(ToErrno(id.status()), EIO);
  EXPECT_NE(id.status().ToString().find("not a regular file"), std::string::npos);
  // The same through a multi-component path and for a content file.
  EXPECT_FALSE(OpenFileBeneath(root_.get(), "d/.envelopefs.dirid", O_RDONLY).ok());
  EXPECT_FALSE(OpenRegular(dir_.get(), ".envelopefs.dirid", O_RDONLY).ok());
}

TEST_F(BackingTreeTest, SideFilesAreBoundedAndNeverFollowed) {
  ASSERT_EQ(::symlink(Path("outside/secret").c_str(), Path("root/d/side").c_str()), 0);
  EXPECT_FALSE(ReadSmallFile(dir_.get(), "side", 1024).ok());
  WriteFile(Path("root/d/big"), std::string(100, 'x'), 0600);
  EXPECT_FALSE(ReadSmallFile(dir_.get(), "big", 99).ok());
  auto ok = ReadSmallFile(dir_.get(), "big", 100);
  ASSERT_TRUE(ok.ok());
  EXPECT_EQ(ok->size(), 100u);
}

TEST_F(BackingTreeTest, ExclusiveCreateRefusesAPlantedSymlink) {
  ASSERT_EQ(::symlink(Path("outside/secret").c_str(), Path("root/d/side.name").c_str()), 0);
  EXPECT_FALSE(CreateSmallFile(dir_.get(), "side.name", AsBytes(std::string("x")), 0400).ok());
  EXPECT_EQ(ReadFile(Path("outside/secret")), "root only");
}

TEST_F(BackingTreeTest, ReplaceSmallFileReplacesAPlantedSymlinkInsteadOfWritingThrough) {
  ASSERT_EQ(::symlink(Path("outside/secret").c_str(), Path("root/d/side.name").c_str()), 0);
  ASSERT_TRUE(ReplaceSmallFile(dir_.get(), "side.name", AsBytes(std::string("long")), 0400).ok());
  EXPECT_EQ(ReadFile(Path("outside/secret")), "root only");
  EXPECT_EQ(ModeOf(Path("outside/secret")), 0600u);
  struct stat st;
  ASSERT_EQ(::lstat(Path("root/d/side.name").c_str(), &st), 0);
  EXPECT_TRUE(S_ISREG(st.st_mode));
  EXPECT_EQ(ReadFile(Path("root/d/side.name")), "long");
  // No temporary file is left behind.
  auto empty = DirectoryIsEmpty(dir_.get(), "side.name");
  ASSERT_TRUE(empty.ok());
  EXPECT_TRUE(*empty);
}

TEST_F(BackingTreeTest, ChmodAndChownNeverReachASymlinksTarget) {
  WriteFile(Path("root/d/mine"), "x", 0600);
  struct stat mine;
  ASSERT_EQ(::lstat(Path("root/d/mine").c_str(), &mine), 0);
  // The attack: the name the mount knows is swapped for a symlink.
  // (Moved aside, not unlinked: the symlink must not get its inode number.)
  ASSERT_EQ(::rename(Path("root/d/mine").c_str(), Path("root/d/mine.old").c_str()), 0);
  ASSERT_EQ(::symlink(Path("outside/secret").c_str(), Path("root/d/mine").c_str()), 0);
  auto obj = OpenObject(dir_.get(), "mine", mine.st_dev, mine.st_ino);
  ASSERT_FALSE(obj.ok());
  EXPECT_EQ(ToErrno(obj.status()), ESTALE);

  // Even given the symlink itself, neither call reaches its target.
  struct stat link;
  ASSERT_EQ(::lstat(Path("root/d/mine").c_str(), &link), 0);
  auto symlink_obj = OpenObject(dir_.get(), "mine", link.st_dev, link.st_ino);
  ASSERT_TRUE(symlink_obj.ok());
  Status s = Chmod(symlink_obj->get(), 0666);
  EXPECT_EQ(ToErrno(s), EOPNOTSUPP);
  EXPECT_EQ(ModeOf(Path("outside/secret")), 0600u);
  if (::geteuid() == 0) {
    struct passwd* nobody = ::getpwnam("nobody");
    ASSERT_NE(nobody, nullptr);
    ASSERT_TRUE(Chown(symlink_obj->get(), nobody->pw_uid, static_cast<gid_t>(-1)).ok());
    struct stat target, after;
    ASSERT_EQ(::stat(Path("outside/secret").c_str(), &target), 0);
    EXPECT_EQ(target.st_uid, 0u);
    ASSERT_EQ(::lstat(Path("root/d/mine").c_str(), &after), 0);
    EXPECT_EQ(after.st_uid, nobody->pw_uid);  // the symlink itself
  }
}

TEST_F(BackingTreeTest, ChmodReachesTheObjectItWasGiven) {
  WriteFile(Path("root/d/f"), "x", 0600);
  struct stat st;
  ASSERT_EQ(::lstat(Path("root/d/f").c_str(), &st), 0);
  auto obj = OpenObject(dir_.get(), "f", st.st_dev, st.st_ino);
  ASSERT_TRUE(obj.ok());
  ASSERT_TRUE(Chmod(obj->get(), 0640).ok());
  EXPECT_EQ(ModeOf(Path("root/d/f")), 0640u);
}

// The RENAME_EXCHANGE race of mkdir, played deterministically: between our
// mkdir and our open, the new name is exchanged for something else.
TEST_F(BackingTreeTest, CreatedDirectoryMustBeTheOneJustMade) {
  auto exchange = [&](const std::string& a, const std::string& b) {
    ASSERT_EQ(::renameat2(AT_FDCWD, Path(a).c_str(), AT_FDCWD, Path(b).c_str(), RENAME_EXCHANGE),
              0);
  };
  // For a symlink to a directory outside.
  ASSERT_EQ(::mkdir(Path("root/d/new1").c_str(), 0700), 0);
  ASSERT_EQ(::symlink(Path("outside").c_str(), Path("root/d/evil").c_str()), 0);
  exchange("root/d/new1", "root/d/evil");
  EXPECT_FALSE(OpenCreatedDirectory(dir_.get(), "new1").ok());
  // For a directory with something in it.
  ASSERT_EQ(::mkdir(Path("root/d/new2").c_str(), 0700), 0);
  ASSERT_EQ(::mkdir(Path("root/d/full").c_str(), 0700), 0);
  WriteFile(Path("root/d/full/x"), "x", 0600);
  exchange("root/d/new2", "root/d/full");
  EXPECT_FALSE(OpenCreatedDirectory(dir_.get(), "new2").ok());
  // For an empty directory that is not private (not made by mkdir(0700)).
  ASSERT_EQ(::mkdir(Path("root/d/new3").c_str(), 0700), 0);
  ASSERT_EQ(::mkdir(Path("root/d/open").c_str(), 0700), 0);
  ASSERT_EQ(::chmod(Path("root/d/open").c_str(), 0755), 0);
  exchange("root/d/new3", "root/d/open");
  EXPECT_FALSE(OpenCreatedDirectory(dir_.get(), "new3").ok());
  if (::geteuid() == 0) {
    // For an empty private directory of another user.
    struct passwd* nobody = ::getpwnam("nobody");
    ASSERT_NE(nobody, nullptr);
    ASSERT_EQ(::mkdir(Path("root/d/new4").c_str(), 0700), 0);
    ASSERT_EQ(::mkdir(Path("root/d/theirs").c_str(), 0700), 0);
    ASSERT_EQ(::chown(Path("root/d/theirs").c_str(), nobody->pw_uid, nobody->pw_gid), 0);
    exchange("root/d/new4", "root/d/theirs");
    EXPECT_FALSE(OpenCreatedDirectory(dir_.get(), "new4").ok());
  }
  // Not exchanged: accepted, also in a setgid directory.
  EXPECT_TRUE(MakeDirectory(dir_.get(), "fresh").ok());
  ASSERT_EQ(::chmod(Path("root/d").c_str(), 02700), 0);
  EXPECT_TRUE(MakeDirectory(dir_.get(), "fresh2").ok());
  EXPECT_EQ(ModeOf(Path("root/d/fresh2")) & S_ISGID, static_cast<mode_t>(S_ISGID));
}

TEST_F(BackingTreeTest, DirIdIsRemovedOnlyInsideTheDirectoryItself) {
  WriteFile(Path("outside/.envelopefs.dirid"), "0123456789abcdef", 0400);
  ASSERT_EQ(::symlink(Path("outside").c_str(), Path("root/d/sub").c_str()), 0);
  EXPECT_FALSE(SetDirIdAside(dir_.get(), "sub", ".envelopefs.dirid", 16).ok());
  EXPECT_EQ(ReadFile(Path("outside/.envelopefs.dirid")), "0123456789abcdef");

  // The real thing: aside, rmdir, and back again if the rmdir fails.
  ASSERT_EQ(::mkdir(Path("root/d/real").c_str(), 0700), 0);
  WriteFile(Path("root/d/real/.envelopefs.dirid"), "fedcba9876543210", 0400);
  auto aside = SetDirIdAside(dir_.get(), "real", ".envelopefs.dirid", 16);
  ASSERT_TRUE(aside.ok()) << aside.status().ToString();
  EXPECT_EQ(ReadFile(Path("root/d/real/.envelopefs.dirid")), "<missing>");
  RestoreDirId(*aside, ".envelopefs.dirid");
  EXPECT_EQ(ReadFile(Path("root/d/real/.envelopefs.dirid")), "fedcba9876543210");
  aside = SetDirIdAside(dir_.get(), "real", ".envelopefs.dirid", 16);
  ASSERT_TRUE(aside.ok());
  EXPECT_TRUE(RemoveDirectory(dir_.get(), "real", *aside).ok());

  // Not empty to the user: refused, nothing removed.
  ASSERT_EQ(::mkdir(Path("root/d/busy").c_str(), 0700), 0);
  WriteFile(Path("root/d/busy/.envelopefs.dirid"), "fedcba9876543210", 0400);
  WriteFile(Path("root/d/busy/entry"), "x", 0600);
  auto busy = SetDirIdAside(dir_.get(), "busy", ".envelopefs.dirid", 16);
  ASSERT_FALSE(busy.ok());
  EXPECT_EQ(ToErrno(busy.status()), ENOTEMPTY);
  EXPECT_EQ(ReadFile(Path("root/d/busy/.envelopefs.dirid")), "fedcba9876543210");
}

TEST_F(BackingTreeTest, RmdirRemovesOnlyOurOwnStaleSideFileTemporaries) {
  // A crash between writing a long-name side file and renaming it into
  // place leaves .envelopefs.tmp.<hex>; rmdir used to say ENOTEMPTY forever.
  const std::string stale = ".envelopefs.tmp.00112233445566778899aabbccddeeff";
  ASSERT_EQ(::mkdir(Path("root/d/crashed").c_str(), 0700), 0);
  WriteFile(Path("root/d/crashed/.envelopefs.dirid"), "fedcba9876543210", 0400);
  WriteFile(Path("root/d/crashed/" + stale), "a long backing name", 0400);
  auto aside = SetDirIdAside(dir_.get(), "crashed", ".envelopefs.dirid", 16);
  ASSERT_TRUE(aside.ok()) << aside.status().ToString();
  EXPECT_EQ(ReadFile(Path("root/d/crashed/" + stale)), "<missing>");
  EXPECT_TRUE(RemoveDirectory(dir_.get(), "crashed", *aside).ok());

  // With a real entry left, nothing is removed, not even the temporary.
  ASSERT_EQ(::mkdir(Path("root/d/busy").c_str(), 0700), 0);
  WriteFile(Path("root/d/busy/" + stale), "x", 0400);
  WriteFile(Path("root/d/busy/entry"), "x", 0600);
  auto busy = SetDirIdAside(dir_.get(), "busy", ".envelopefs.dirid", 16);
  ASSERT_FALSE(busy.ok());
  EXPECT_EQ(ToErrno(busy.status()), ENOTEMPTY);
  EXPECT_EQ(ReadFile(Path("root/d/busy/" + stale)), "x");

  // A symlink or a directory of that name: not ours to judge, never
  // followed, left in place.
  ASSERT_EQ(::mkdir(Path("root/d/planted").c_str(), 0700), 0);
  ASSERT_EQ(::symlink(Path("outside/secret").c_str(), Path("root/d/planted/" + stale).c_str()),
            0);
  auto planted = SetDirIdAside(dir_.get(), "planted", ".envelopefs.dirid", 16);
  ASSERT_FALSE(planted.ok());
  EXPECT_EQ(ToErrno(planted.status()), ENOTEMPTY);
  EXPECT_EQ(ReadFile(Path("outside/secret")), "root only");
  ASSERT_EQ(::unlink(Path("root/d/planted/" + stale).c_str()), 0);
  ASSERT_EQ(::mkdir(Path("root/d/planted/" + stale).c_str(), 0700), 0);
  EXPECT_EQ(ToErrno(SetDirIdAside(dir_.get(), "planted", ".envelopefs.dirid", 16).status()),
            ENOTEMPTY);

  // Another user's file of that name: never removed.
  if (::geteuid() != 0) return;
  const struct passwd* nobody = ::getpwnam("nobody");
  ASSERT_NE(nobody, nullptr);
  ASSERT_EQ(::mkdir(Path("root/d/theirs").c_str(), 0700), 0);
  WriteFile(Path("root/d/theirs/" + stale), "theirs", 0400);
  ASSERT_EQ(::chown(Path("root/d/theirs/" + stale).c_str(), nobody->pw_uid, nobody->pw_gid), 0);
  EXPECT_EQ(ToErrno(SetDirIdAside(dir_.get(), "theirs", ".envelopefs.dirid", 16).status()),
            ENOTEMPTY);
  EXPECT_EQ(ReadFile(Path("root/d/theirs/" + stale)), "theirs");
}

TEST_F(BackingTreeTest, PrivateDirRefusesPlantedOrSharedDirectories) {
  ASSERT_EQ(::symlink(Path("outside").c_str(), Path("root/store1").c_str()), 0);
  EXPECT_FALSE(OpenPrivateDir(root_.get(), "store1", /*create=*/true).ok());
  ASSERT_EQ(::mkdir(Path("root/store2").c_str(), 0700), 0);
  ASSERT_EQ(::chmod(Path("root/store2").c_str(), 0777), 0);
  EXPECT_FALSE(OpenPrivateDir(root_.get(), "store2", /*create=*/true).ok());
  EXPECT_TRUE(OpenPrivateDir(root_.get(), "store3", /*create=*/true).ok());
  EXPECT_TRUE(OpenPrivateDir(root_.get(), "store3", /*create=*/false).ok());
}

}  // namespace
}  // namespace envelope::fs::backing
