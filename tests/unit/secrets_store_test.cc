// SecretsStore against kms::FakeKeyService, with labelled blobs (like
// envelope-keyd's: VersionOf reads them) and opaque ones (like AWS KMS's),
// on files in a temporary directory.
#include "tools/secrets_store.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "core/base/base64.h"
#include "kms/blob_label.h"
#include "kms/fake_key_service.h"
#include "tests/unit/test_files.h"
#include "tests/unit/test_hex.h"
#include "tools/dotenv.h"
#include "tools/secrets_file_io.h"

namespace envelope::secrets {
namespace {

using envelope::testing::TempDir;

std::string Text(const crypto::SecretBytes& b) {
  return std::string(reinterpret_cast<const char*>(b.data()), b.size());
}

std::string ReadWhole(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

void WriteWhole(const std::string& path, const std::string& text) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out << text;
}

std::vector<std::string> DirEntries(const std::string& dir) {
  std::vector<std::string> names;
  DIR* d = ::opendir(dir.c_str());
  if (d == nullptr) return names;
  while (dirent* e = ::readdir(d)) {
    const std::string n = e->d_name;
    if (n != "." && n != "..") names.push_back(n);
  }
  ::closedir(d);
  return names;
}

bool Contains(const Status& s, const std::string& needle) {
  return s.message().find(needle) != std::string::npos;
}

// Labelled (true) or opaque (false) blobs.
class SecretsStoreTest : public ::testing::TestWithParam<bool> {
 protected:
  SecretsStoreTest() : keys_(GetParam()) {
    key_ = keys_.CreateKey("billing");
    path_ = dir_.File("billing.env");
  }

  bool labelled() const { return GetParam(); }

  // A store on path_ (or `path`) with `key` as --key, collecting warnings.
  std::unique_ptr<SecretsStore> Store(const std::string& key, const std::string& path = "") {
    StoreOptions options;
    options.path = path.empty() ? path_ : path;
    options.key = key;
    options.on_foreign_key = [this](const ForeignKeyWarning& w) { warnings_.push_back(w); };
    return std::make_unique<SecretsStore>(keys_, std::move(options));
  }

  void MustSet(SecretsStore& store, const std::string& name, const std::string& value,
               const std::string& app = "billing") {
    auto r = store.Set(app, name, AsBytes(value));
    ASSERT_TRUE(r.ok()) << r.status().ToString();
  }

  std::string MustGet(SecretsStore& store, const std::string& name,
                      const std::string& app = "billing") {
    auto v = store.Get(app, name);
    EXPECT_TRUE(v.ok()) << v.status().ToString();
    return v.ok() ? Text(*v) : "";
  }

  // The lines of the file, without the final empty one.
  std::vector<std::string> Lines(const std::string& path = "") {
    std::vector<std::string> out;
    std::stringstream s(ReadWhole(path.empty() ? path_ : path));
    for (std::string l; std::getline(s, l);) out.push_back(l);
    return out;
  }

  // The blob of NAME's line in the file.
  Bytes BlobOf(const std::string& name) {
    auto file = LoadSecretsFile(path_);
    EXPECT_TRUE(file.ok());
    const Line* l = file.ok() ? file->Find(name) : nullptr;
    EXPECT_NE(l, nullptr) << name;
    return l != nullptr ? l->blob : Bytes();
  }

  kms::FakeKeyService keys_;
  TempDir dir_;
  std::string key_;
  std::string path_;
  std::vector<ForeignKeyWarning> warnings_;
};

INSTANTIATE_TEST_SUITE_P(Blobs, SecretsStoreTest, ::testing::Values(true, false),
                         [](const ::testing::TestParamInfo<bool>& info) {
                           return info.param ? "Labelled" : "Opaque";
                         });

TEST_P(SecretsStoreTest, SetGetRoundTrip) {
  auto store = Store("alias/billing");
  const std::vector<std::pair<std::string, std::string>> values = {
      {"DB_PASSWORD", "hunter2"}, {"EMPTY", ""}, {"MULTI", "line 1\nline 2\r\n"},
      {"BIG", std::string(kMaxValueSizeInBytes, 'x')}};
  for (const auto& [name, value] : values) MustSet(*store, name, value);
  for (const auto& [name, value] : values) EXPECT_EQ(MustGet(*store, name), value) << name;
  // Replacing a value keeps its line.
  auto r = store->Set("billing", "DB_PASSWORD", AsBytes("changed"));
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->line, 2);
  EXPECT_EQ(MustGet(*store, "DB_PASSWORD"), "changed");
  // A new file: mode 0600, the key's ARN recorded rather than the alias.
  struct stat st {};
  ASSERT_EQ(::stat(path_.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 07777, 0600u);
  EXPECT_EQ(Lines()[0], "# envelope-secrets v1 app=billing key=" + key_);
  // No plaintext in the file.
  EXPECT_EQ(ReadWhole(path_).find("hunter2"), std::string::npos);
  EXPECT_EQ(ReadWhole(path_).find("changed"), std::string::npos);
}

TEST_P(SecretsStoreTest, SetReportsTheVersionWhereTheBlobSaysIt) {
  auto store = Store(key_);
  auto r = store->Set("billing", "A", AsBytes("a"));
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->line, 2);
  auto info = keys_.DescribeKey(key_);
  ASSERT_TRUE(info.ok());
  if (labelled()) {
    ASSERT_TRUE(r->version.has_value());
    EXPECT_EQ(r->version->key_id, info->key_id);
    EXPECT_EQ(r->version->version, 1u);
  } else {
    EXPECT_FALSE(r->version.has_value());
  }
}

TEST_P(SecretsStoreTest, ListShowsNamesLinesAndVersionsOnlyWhereBlobsSay) {
  auto store = Store(key_);
  MustSet(*store, "A", "a");
  keys_.RotateKey(key_);
  MustSet(*store, "B", "b");
  const int64_t decrypts = keys_.Calls("Decrypt");
  auto listing = store->List("billing");
  ASSERT_TRUE(listing.ok()) << listing.status().ToString();
  EXPECT_EQ(keys_.Calls("Decrypt"), decrypts);  // decrypts nothing
  EXPECT_EQ(listing->app, "billing");
  EXPECT_EQ(listing->key, key_);
  ASSERT_EQ(listing->entries.size(), 2u);
  EXPECT_EQ(listing->entries[0].name, "A");
  EXPECT_EQ(listing->entries[0].line, 2);
  EXPECT_EQ(listing->entries[1].name, "B");
  EXPECT_EQ(listing->entries[1].line, 3);
  if (labelled()) {
    ASSERT_TRUE(listing->entries[0].version && listing->entries[1].version);
    EXPECT_EQ(listing->entries[0].version->version, 1u);
    EXPECT_EQ(listing->entries[1].version->version, 2u);
  } else {
    EXPECT_FALSE(listing->entries[0].version.has_value());
    EXPECT_FALSE(listing->entries[1].version.has_value());
  }
  EXPECT_TRUE(listing->damaged.empty());
}

TEST_P(SecretsStoreTest, BlobMovedToAnotherNameOrAppFailsToDecrypt) {
  auto store = Store(key_);
  MustSet(*store, "A", "value of A");
  MustSet(*store, "B", "value of B");
  const std::vector<std::string> lines = Lines();
  const std::string a_blob = lines[1].substr(lines[1].find('='));
  // A's blob on B's line.
  WriteWhole(path_, lines[0] + "\n" + lines[1] + "\nB" + a_blob + "\n");
  auto moved = store->Get("billing", "B");
  ASSERT_FALSE(moved.ok());
  EXPECT_EQ(moved.status().code(), StatusCode::kCorruption);
  EXPECT_TRUE(Contains(moved.status(), path_ + ":3: cannot decrypt B (a value moved here"))
      << moved.status().ToString();
  EXPECT_TRUE(Contains(moved.status(), "InvalidCiphertextException"));
  EXPECT_EQ(MustGet(*store, "A"), "value of A");

  // The whole file relabelled to another application.
  const std::string payroll = dir_.File("payroll.env");
  std::string header = lines[0];
  header.replace(header.find("app=billing"), 11, "app=payroll");
  WriteWhole(payroll, header + "\n" + lines[1] + "\n");
  auto other = Store("", payroll);
  auto relabelled = other->Get("payroll", "A");
  ASSERT_FALSE(relabelled.ok());
  EXPECT_TRUE(Contains(relabelled.status(), payroll + ":2: cannot decrypt A"));
  EXPECT_TRUE(Contains(relabelled.status(), "InvalidCiphertextException"));
  // And the app is taken from the command, not the file.
  auto wrong_app = store->Get("payroll", "A");
  ASSERT_FALSE(wrong_app.ok());
  EXPECT_TRUE(Contains(wrong_app.status(), "holds the secrets of 'billing', not 'payroll'"));
}

TEST_P(SecretsStoreTest, BlobUnderAnotherKeyIsRefusedEvenWithTheRightContext) {
  const std::string other_key = keys_.CreateKey();
  const std::string other_path = dir_.File("other.env");
  auto other = Store(other_key, other_path);
  MustSet(*other, "A", "the other key's value");
  auto store = Store(key_);
  MustSet(*store, "A", "mine");
  const std::string foreign_line = Lines(other_path)[1];
  WriteWhole(path_, Lines()[0] + "\n" + foreign_line + "\n");
  auto r = store->Get("billing", "A");
  ASSERT_FALSE(r.ok());
  EXPECT_TRUE(Contains(r.status(), "IncorrectKeyException")) << r.status().ToString();
}

TEST_P(SecretsStoreTest, RotateMovesEveryValueToTheNewVersion) {
  auto store = Store(key_);
  MustSet(*store, "A", "a");
  MustSet(*store, "B", "b");
  MustSet(*store, "C", "c");
  keys_.RotateKey(key_);
  MustSet(*store, "D", "d");  // already under version 2
  const std::string before = ReadWhole(path_);
  const Bytes d_before = BlobOf("D");
  const int64_t reencrypts = keys_.Calls("ReEncrypt");

  auto r = store->Rotate("billing");
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  if (labelled()) {
    // Values already current are skipped and keep their line.
    EXPECT_TRUE(r->versions_known);
    ASSERT_TRUE(r->version.has_value());
    EXPECT_EQ(*r->version, 2u);
    EXPECT_EQ(r->rotated, 3u);
    EXPECT_EQ(r->already_current, 1u);
    EXPECT_EQ(r->from, (std::map<std::string, size_t>{{"version 1", 3}}));
    EXPECT_EQ(keys_.Calls("ReEncrypt") - reencrypts, 3);
    EXPECT_EQ(BlobOf("D"), d_before);
  } else {
    // The blobs do not say their version: every value is re-encrypted.
    EXPECT_FALSE(r->versions_known);
    EXPECT_FALSE(r->version.has_value());
    EXPECT_EQ(r->rotated, 4u);
    EXPECT_EQ(r->already_current, 0u);
    EXPECT_EQ(r->from, (std::map<std::string, size_t>{{"an unknown version", 4}}));
    EXPECT_EQ(keys_.Calls("ReEncrypt") - reencrypts, 4);
  }
  EXPECT_NE(ReadWhole(path_), before);
  for (const char* name : {"A", "B", "C", "D"}) {
    EXPECT_EQ(keys_.VersionInBlob(BlobOf(name)), 2u) << name;
  }
  EXPECT_EQ(MustGet(*store, "A"), "a");
  EXPECT_EQ(MustGet(*store, "D"), "d");

  // Again: with versions known there is nothing to do and the file stays
  // byte for byte; without, every value is re-encrypted again.
  const std::string after = ReadWhole(path_);
  auto again = store->Rotate("billing");
  ASSERT_TRUE(again.ok());
  if (labelled()) {
    EXPECT_EQ(again->rotated, 0u);
    EXPECT_EQ(again->already_current, 4u);
    EXPECT_EQ(ReadWhole(path_), after);
  } else {
    EXPECT_EQ(again->rotated, 4u);
  }
}

TEST_P(SecretsStoreTest, RotateWithoutAVersionNumberReEncryptsEverything) {
  // Labelled blobs, but the service will not say the current version (a
  // policy that denies ListKeyRotations): no blob can be told current.
  auto store = Store(key_);
  MustSet(*store, "A", "a");
  MustSet(*store, "B", "b");
  keys_.SetVersionsVisible(false);
  auto r = store->Rotate("billing");
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_FALSE(r->versions_known);
  EXPECT_EQ(r->rotated, 2u);
  EXPECT_EQ(r->already_current, 0u);
  EXPECT_EQ(MustGet(*store, "B"), "b");
}

TEST_P(SecretsStoreTest, UnavailableServiceMidRotateLeavesTheFileIntact) {
  auto store = Store(key_);
  for (const char* name : {"A", "B", "C", "D"}) MustSet(*store, name, std::string("v") + name);
  keys_.RotateKey(key_);
  const std::string before = ReadWhole(path_);
  // Let the service die after 0, 1, 2, ... more calls, until a rotate gets
  // through; at least one attempt must die with ReEncrypts already done.
  bool died_mid_rotate = false;
  bool done = false;
  for (int64_t calls = 0; calls < 50 && !done; ++calls) {
    const int64_t reencrypts = keys_.Calls("ReEncrypt");
    keys_.FailAfter(calls);
    auto r = store->Rotate("billing");
    keys_.Restore();
    if (r.ok()) {
      done = true;
      break;
    }
    EXPECT_EQ(r.status().code(), StatusCode::kUnavailable) << r.status().ToString();
    EXPECT_EQ(ReadWhole(path_), before) << "after " << calls << " calls";
    EXPECT_EQ(DirEntries(dir_.path()), std::vector<std::string>{"billing.env"});
    // The failed call counts too: two or more means one got through.
    if (keys_.Calls("ReEncrypt") - reencrypts >= 2) {
      died_mid_rotate = true;
      EXPECT_TRUE(Contains(r.status(), ": cannot re-encrypt ")) << r.status().ToString();
    }
  }
  EXPECT_TRUE(done);
  EXPECT_TRUE(died_mid_rotate);
  for (const char* name : {"A", "B", "C", "D"}) {
    EXPECT_EQ(keys_.VersionInBlob(BlobOf(name)), 2u) << name;
    EXPECT_EQ(MustGet(*store, name), std::string("v") + name);
  }
}

TEST_P(SecretsStoreTest, DisabledKeyIsRefusedWithItsError) {
  auto store = Store(key_);
  MustSet(*store, "A", "a");
  keys_.RotateKey(key_);  // so that rotate has work to do in both modes
  const std::string before = ReadWhole(path_);
  keys_.SetKeyState(key_, "Disabled");
  auto get = store->Get("billing", "A");
  ASSERT_FALSE(get.ok());
  EXPECT_EQ(get.status().code(), StatusCode::kFailedPrecondition);
  EXPECT_TRUE(Contains(get.status(), path_ + ":2: cannot decrypt A"));
  EXPECT_TRUE(Contains(get.status(), "DisabledException")) << get.status().ToString();
  EXPECT_FALSE(Contains(get.status(), "a value moved here"));  // not a damaged value
  auto set = store->Set("billing", "B", AsBytes("b"));
  ASSERT_FALSE(set.ok());
  EXPECT_TRUE(Contains(set.status(), "cannot encrypt B under " + key_));
  EXPECT_TRUE(Contains(set.status(), "DisabledException"));
  auto rotate = store->Rotate("billing");
  ASSERT_FALSE(rotate.ok());
  EXPECT_TRUE(Contains(rotate.status(), "DisabledException"));
  EXPECT_EQ(ReadWhole(path_), before);
  keys_.SetKeyState(key_, "Enabled");
  EXPECT_EQ(MustGet(*store, "A"), "a");
}

TEST_P(SecretsStoreTest, ForeignKeyCreatorIsReportedOncePerKey) {
  const std::string theirs = keys_.CreateKey("shared");
  keys_.SetForeignCreator(theirs, "user:mallory");
  auto store = Store("alias/shared");
  MustSet(*store, "A", "a");
  MustSet(*store, "B", "b");
  ASSERT_EQ(warnings_.size(), 1u);
  EXPECT_EQ(warnings_[0].key, "alias/shared");
  EXPECT_EQ(warnings_[0].arn, theirs);
  EXPECT_EQ(warnings_[0].creator, "user:mallory");

  // Unpinned, a file under their key is still used, with a warning that
  // names the key the file records.
  warnings_.clear();
  auto unpinned = Store("");
  EXPECT_EQ(MustGet(*unpinned, "A"), "a");
  ASSERT_EQ(warnings_.size(), 1u);
  EXPECT_EQ(warnings_[0].key, theirs);

  // Pinned to the caller's own key, the file is refused (and its key is
  // still named as someone else's).
  warnings_.clear();
  auto pinned = Store(key_);
  auto r = pinned->Get("billing", "A");
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), StatusCode::kFailedPrecondition);
  EXPECT_TRUE(Contains(r.status(), "is encrypted under " + theirs + ", not " + key_));
  ASSERT_EQ(warnings_.size(), 1u);
  EXPECT_EQ(warnings_[0].creator, "user:mallory");

  // The caller's own key draws none.
  warnings_.clear();
  auto own = Store(key_, dir_.File("own.env"));
  MustSet(*own, "A", "a");
  EXPECT_EQ(MustGet(*own, "A"), "a");
  EXPECT_TRUE(warnings_.empty());
}

TEST_P(SecretsStoreTest, PinAcceptsAnyNameOfTheFilesKey) {
  MustSet(*Store(key_), "A", "a");
  auto info = keys_.DescribeKey(key_);
  ASSERT_TRUE(info.ok());
  for (const std::string& pin : {key_, std::string("alias/billing"), info->key_id}) {
    auto store = Store(pin);
    EXPECT_EQ(MustGet(*store, "A"), "a") << pin;
  }
  auto r = Store(keys_.CreateKey())->Get("billing", "A");
  EXPECT_EQ(r.status().code(), StatusCode::kFailedPrecondition);
}

TEST_P(SecretsStoreTest, MissingFile) {
  auto get = Store("")->Get("billing", "A");
  EXPECT_EQ(get.status().code(), StatusCode::kNotFound);
  EXPECT_TRUE(Contains(get.status(), path_ + " does not exist"));
  auto set = Store("")->Set("billing", "A", AsBytes("a"));
  EXPECT_EQ(set.status().code(), StatusCode::kNotFound);
  EXPECT_TRUE(Contains(set.status(), "give --key KEY to create it"));
  EXPECT_EQ(Store(key_)->Rotate("billing").status().code(), StatusCode::kNotFound);
  EXPECT_EQ(Store(key_)->Remove("billing", "A").code(), StatusCode::kNotFound);
  EXPECT_TRUE(DirEntries(dir_.path()).empty());
}

TEST_P(SecretsStoreTest, RemoveDeletesTheLine) {
  auto store = Store(key_);
  MustSet(*store, "A", "a");
  MustSet(*store, "B", "b");
  ASSERT_TRUE(store->Remove("billing", "A").ok());
  EXPECT_EQ(store->Get("billing", "A").status().code(), StatusCode::kNotFound);
  EXPECT_EQ(MustGet(*store, "B"), "b");
  const Status again = store->Remove("billing", "A");
  EXPECT_EQ(again.code(), StatusCode::kNotFound);
  EXPECT_TRUE(Contains(again, "A is not set in " + path_));
}

TEST_P(SecretsStoreTest, TotalSizeLimitLeavesTheFileUnchanged) {
  auto store = Store(key_);
  const std::string value(4000, 'v');
  // 16 values of 4000 bytes: 64,080 bytes of environment, just inside.
  std::string plain;
  for (int i = 10; i < 26; ++i) {
    plain += 'V';
    plain += std::to_string(i);
    plain += "='" + value + "'\n";
  }
  auto imported = store->Import("billing", AsBytes(plain), "plain.env");
  ASSERT_TRUE(imported.ok()) << imported.status().ToString();
  const std::string before = ReadWhole(path_);
  auto set = store->Set("billing", "V26", AsBytes(value));
  ASSERT_FALSE(set.ok());
  EXPECT_EQ(set.status().code(), StatusCode::kInvalidArgument);
  EXPECT_TRUE(Contains(set.status(), "the limit is 65536")) << set.status().ToString();
  auto more = store->Import("billing", AsBytes("MORE='" + std::string(2000, 'm') + "'\n"),
                            "more.env");
  ASSERT_FALSE(more.ok());
  EXPECT_TRUE(Contains(more.status(), "the limit is 65536"));
  EXPECT_EQ(ReadWhole(path_), before);
  // Replacing a value counts its new size, not both.
  MustSet(*store, "V10", std::string(4000, 'w'));
  auto all = store->DecryptAll("billing");
  ASSERT_TRUE(all.ok()) << all.status().ToString();
  EXPECT_EQ(all->size(), 16u);
}

TEST_P(SecretsStoreTest, ImportExportRoundTrip) {
  const std::string plain =
      "# comment\n"
      "export DB_USER=app\n"
      "DB_PASSWORD='p@ss \"word\" $x'\n"
      "TLS_KEY=\"line 1\\nline 2\"\n"
      "EMPTY=\n"
      "HOME_LIKE=$HOME\n";
  auto store = Store(key_);
  auto imported = store->Import("billing", AsBytes(plain), "plain.env");
  ASSERT_TRUE(imported.ok()) << imported.status().ToString();
  EXPECT_EQ(*imported, 5u);
  EXPECT_EQ(MustGet(*store, "DB_PASSWORD"), "p@ss \"word\" $x");
  EXPECT_EQ(MustGet(*store, "TLS_KEY"), "line 1\nline 2");
  EXPECT_EQ(MustGet(*store, "HOME_LIKE"), "$HOME");

  auto exported = store->Export("billing");
  ASSERT_TRUE(exported.ok()) << exported.status().ToString();
  auto want = ParseDotenv(AsBytes(plain));
  auto got = ParseDotenv(exported->view());
  ASSERT_TRUE(want.ok() && got.ok());
  ASSERT_EQ(got->size(), want->size());
  for (size_t i = 0; i < want->size(); ++i) {
    EXPECT_EQ((*got)[i].name, (*want)[i].name);
    EXPECT_EQ(Text((*got)[i].value), Text((*want)[i].value)) << (*want)[i].name;
  }
  EXPECT_NE(Text(*exported).find("# plaintext secrets of billing"), std::string::npos);

  // The export imports into another file as the same values.
  const std::string copy_path = dir_.File("copy.env");
  auto copy = Store(key_, copy_path);
  auto reimported = copy->Import("billing", exported->view(), "export");
  ASSERT_TRUE(reimported.ok());
  EXPECT_EQ(*reimported, 5u);
  auto again = copy->Export("billing");
  ASSERT_TRUE(again.ok());
  EXPECT_EQ(Text(*again), Text(*exported));

  // Import replaces names already present and changes nothing on a bad line.
  auto replaced = store->Import("billing", AsBytes("DB_USER=other\n"), "more.env");
  ASSERT_TRUE(replaced.ok());
  EXPECT_EQ(MustGet(*store, "DB_USER"), "other");
  const std::string before = ReadWhole(path_);
  auto bad = store->Import("billing", AsBytes("NEW=1\n1BAD=2\n"), "bad.env");
  ASSERT_FALSE(bad.ok());
  EXPECT_TRUE(Contains(bad.status(), "bad.env:2: invalid variable name"));
  EXPECT_EQ(ReadWhole(path_), before);
}

TEST_P(SecretsStoreTest, DamagedLinesSurviveRewrites) {
  auto store = Store(key_);
  MustSet(*store, "A", "a");
  MustSet(*store, "B", "b");
  const std::vector<std::string> lines = Lines();
  const std::vector<std::string> damaged = {"# a comment", "BROKEN=plaintext",
                                            "C=enc:v1:!!!not base64!!!", "LD_PRELOAD=enc:v1:AAAA"};
  std::string text = lines[0] + "\n" + lines[1] + "\n";
  for (const std::string& l : damaged) text += l + "\n";
  text += lines[2] + "\n";
  WriteWhole(path_, text);

  // Other names still read; the damaged name does not.
  EXPECT_EQ(MustGet(*store, "A"), "a");
  auto c = store->Get("billing", "C");
  ASSERT_FALSE(c.ok());
  EXPECT_TRUE(Contains(c.status(), path_ + ":5: C: the value is not valid base64"));
  // Commands that need every value refuse, naming the first damaged line.
  for (const Status& s : {store->DecryptAll("billing").status(),
                          store->Export("billing").status()}) {
    EXPECT_EQ(s.code(), StatusCode::kCorruption);
    EXPECT_TRUE(Contains(s, path_ + ":4: BROKEN")) << s.ToString();
    EXPECT_TRUE(Contains(s, "(and 2 more damaged lines"));
  }
  keys_.RotateKey(key_);
  EXPECT_EQ(store->Rotate("billing").status().code(), StatusCode::kCorruption);
  EXPECT_EQ(ReadWhole(path_), text);
  auto listing = store->List("billing");
  ASSERT_TRUE(listing.ok());
  ASSERT_EQ(listing->damaged.size(), 3u);
  EXPECT_EQ(listing->damaged[0].line, 4);
  EXPECT_EQ(listing->entries.size(), 2u);

  // Set and rm of other names keep the damaged lines byte for byte.
  MustSet(*store, "D", "d");
  ASSERT_TRUE(store->Remove("billing", "A").ok());
  std::vector<std::string> now = Lines();
  ASSERT_EQ(now.size(), 7u);
  EXPECT_EQ(now[0], lines[0]);
  EXPECT_EQ(std::vector<std::string>(now.begin() + 1, now.begin() + 5), damaged);
  EXPECT_EQ(now[5], lines[2]);
  EXPECT_EQ(now[6].rfind("D=enc:v1:", 0), 0u);
  // Setting a damaged name repairs its line in place; rm removes one.
  MustSet(*store, "C", "fixed");
  ASSERT_TRUE(store->Remove("billing", "LD_PRELOAD").ok());
  ASSERT_TRUE(store->Remove("billing", "BROKEN").ok());
  now = Lines();
  EXPECT_EQ(now[1], "# a comment");
  EXPECT_EQ(now[2].rfind("C=enc:v1:", 0), 0u);
  auto all = store->DecryptAll("billing");
  ASSERT_TRUE(all.ok()) << all.status().ToString();
  ASSERT_EQ(all->size(), 3u);
  EXPECT_EQ((*all)[0].name, "C");
  EXPECT_EQ(Text((*all)[0].value), "fixed");
  EXPECT_EQ((*all)[0].line, 3);
}

TEST_P(SecretsStoreTest, RefusedNamesAndValues) {
  auto store = Store(key_);
  EXPECT_EQ(store->Set("billing", "LD_PRELOAD", AsBytes("/tmp/x.so")).status().code(),
            StatusCode::kInvalidArgument);
  EXPECT_EQ(store->Set("bad app", "A", AsBytes("a")).status().code(),
            StatusCode::kInvalidArgument);
  const std::string nul("a\0b", 3);
  EXPECT_EQ(store->Set("billing", "A", AsBytes(nul)).status().code(),
            StatusCode::kInvalidArgument);
  EXPECT_EQ(store->Set("billing", "A", AsBytes(std::string(kMaxValueSizeInBytes + 1, 'x')))
                .status()
                .code(),
            StatusCode::kInvalidArgument);
  EXPECT_TRUE(DirEntries(dir_.path()).empty());
  EXPECT_EQ(keys_.Calls("Encrypt"), 0);
}

// A fake whose VersionOf reads envelope-keyd's blob label, as
// KeydKeyService's does: for blobs made by hand in that layout.
class KeydLabelFake : public kms::FakeKeyService {
 public:
  std::optional<kms::BlobVersion> VersionOf(ByteView blob) const override {
    auto label = kms::ReadBlobLabel(blob);
    if (!label.ok()) return FakeKeyService::VersionOf(blob);
    return kms::BlobVersion{label->key_id, label->key_version, label->plaintext_size};
  }
};

TEST(SecretsStoreSizeTest, ExactValueSizeOnlyForLabelledBlobs) {
  KeydLabelFake keys;
  const std::string key = keys.CreateKey();
  TempDir dir;
  StoreOptions options;
  options.path = dir.File("billing.env");
  options.key = key;
  SecretsStore store(keys, options);
  ASSERT_TRUE(store.Set("billing", "FAKE", AsBytes("abc")).ok());  // a fake's blob
  // An envelope-keyd v1 blob (docs/SECRETS.md's known answer): key
  // 00112233-…-eeff, version 2, a 3-byte value.
  const Bytes keyd_blob = envelope::testing::Hex(
      "454b01" "00112233445566778899aabbccddeeff" "02000000" "000000000000000000000000"
      "deadbeef" "000102030405060708090a0b0c0d0e0f");
  std::ofstream(options.path, std::ios::app) << EntryLine("KEYD", keyd_blob) << "\n";
  auto listing = store.List("billing");
  ASSERT_TRUE(listing.ok()) << listing.status().ToString();
  ASSERT_EQ(listing->entries.size(), 2u);
  EXPECT_TRUE(listing->entries[0].version.has_value());
  ASSERT_TRUE(listing->entries[0].value_size.has_value());  // the fake's labels say it too
  EXPECT_EQ(*listing->entries[0].value_size, 3u);
  ASSERT_TRUE(listing->entries[1].version.has_value());
  EXPECT_EQ(listing->entries[1].version->key_id, "00112233-4455-6677-8899-aabbccddeeff");
  EXPECT_EQ(listing->entries[1].version->version, 2u);
  ASSERT_TRUE(listing->entries[1].value_size.has_value());
  EXPECT_EQ(*listing->entries[1].value_size, 3u);
  // A service with opaque blobs says nothing, even of a keyd-shaped blob.
  kms::FakeKeyService opaque(/*labelled=*/false);
  SecretsStore opaque_store(opaque, options);
  EXPECT_FALSE(opaque_store.ValueSizeOf(keyd_blob).has_value());
  EXPECT_EQ(*store.ValueSizeOf(keyd_blob), 3u);
}

}  // namespace
}  // namespace envelope::secrets
