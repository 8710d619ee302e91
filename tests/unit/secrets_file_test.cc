#include "tools/secrets_file.h"

#include <gtest/gtest.h>

#include <string>

#include "tests/unit/test_hex.h"

namespace envelope::secrets {
namespace {

using envelope::testing::Hex;

constexpr char kKey[] =
    "arn:aws:kms:local:000000000000:key/00112233-4455-6677-8899-aabbccddeeff";

// An envelope-keyd v1 blob: 'E' 'K' 0x01, key id 00112233-…-eeff, key
// version 2, a zero nonce, 4 bytes of "ciphertext" (a 3-byte value plus the
// record version byte) and a tag 00…0f.
Bytes SampleBlob() {
  return Hex(
      "454b01"
      "00112233445566778899aabbccddeeff"
      "02000000"
      "000000000000000000000000"
      "deadbeef"
      "000102030405060708090a0b0c0d0e0f");
}

std::string Header(const std::string& app = "billing") {
  return "# envelope-secrets v1 app=" + app + " key=" + kKey;
}

TEST(SecretsFileTest, EntryLineKnownAnswer) {
  // Independently: python3 -c "import base64; print(base64.b64encode(
  //   bytes.fromhex('454b01…0f')).decode())"
  EXPECT_EQ(EntryLine("DB_PASSWORD", SampleBlob()),
            "DB_PASSWORD=enc:v1:RUsBABEiM0RVZneImaq7zN3u/wIAAAAAAAAAAAAAAAAAAA"
            "Derb7vAAECAwQFBgcICQoLDA0ODw==");
}

TEST(SecretsFileTest, ValueSizeBoundIsTheBlobSize) {
  // The file does not read blob layouts (the key service's business): the
  // bound holds for any service's blobs.
  EXPECT_EQ(ValueSizeBoundOfBlob(SampleBlob()), SampleBlob().size());
  EXPECT_EQ(ValueSizeBoundOfBlob(Hex("454b01")), 3u);
}

TEST(SecretsFileTest, ContextBindsFormatAppAndName) {
  const auto ctx = ValueContext("billing", "DB_PASSWORD");
  const std::map<std::string, std::string> want = {
      {"envelope:secrets", "v1"}, {"app", "billing"}, {"name", "DB_PASSWORD"}};
  EXPECT_EQ(ctx, want);
  EXPECT_NE(ValueContext("billing", "API_TOKEN"), ctx);
  EXPECT_NE(ValueContext("payroll", "DB_PASSWORD"), ctx);
}

TEST(SecretsFileTest, ValueRecordRoundTripIncludingEmpty) {
  for (const std::string& value : {std::string(), std::string("hunter2"),
                                   std::string("a\nb\x01\xff", 5)}) {
    auto record = MakeValueRecord(AsBytes(value));
    ASSERT_TRUE(record.ok()) << record.status().ToString();
    ASSERT_EQ(record->size(), value.size() + 1);
    EXPECT_EQ(record->data()[0], kValueRecordVersion);
    auto back = OpenValueRecord(record->view());
    ASSERT_TRUE(back.ok());
    EXPECT_EQ(
        std::string(reinterpret_cast<const char*>(back->data()), back->size()),
        value);
  }
}

TEST(SecretsFileTest, UnknownValueRecordVersionIsCorruption) {
  EXPECT_EQ(OpenValueRecord(Hex("02414243")).status().code(),
            StatusCode::kCorruption);
  EXPECT_EQ(OpenValueRecord(Bytes()).status().code(), StatusCode::kCorruption);
}

TEST(SecretsFileTest, ValueLimits) {
  const std::string max(kMaxValueSizeInBytes, 'x');
  EXPECT_TRUE(CheckValue("A", AsBytes(max)).ok());
  EXPECT_TRUE(MakeValueRecord(AsBytes(max)).ok());
  const std::string over(kMaxValueSizeInBytes + 1, 'x');
  Status s = CheckValue("A", AsBytes(over));
  EXPECT_EQ(s.code(), StatusCode::kInvalidArgument);
  EXPECT_NE(s.message().find("4095"), std::string::npos) << s.message();
  EXPECT_FALSE(MakeValueRecord(AsBytes(over)).ok());
  const std::string nul("a\0b", 3);
  EXPECT_NE(CheckValue("A", AsBytes(nul)).message().find("NUL"),
            std::string::npos);
  EXPECT_TRUE(CheckEnvironmentSize(kMaxTotalSizeInBytes).ok());
  s = CheckEnvironmentSize(kMaxTotalSizeInBytes + 1);
  EXPECT_EQ(s.code(), StatusCode::kInvalidArgument);
  EXPECT_NE(s.message().find("65536"), std::string::npos) << s.message();
}

TEST(SecretsFileTest, Names) {
  for (const char* ok : {"A", "_", "DB_PASSWORD", "a1", "_x9"}) {
    EXPECT_TRUE(IsValidName(ok)) << ok;
  }
  for (const char* bad : {"", "1A", "A-B", "A B", "A=B", "Ä", "A.B", "$A"}) {
    EXPECT_FALSE(IsValidName(bad)) << bad;
  }
  EXPECT_TRUE(IsValidName(std::string(kMaxNameLength, 'A')));
  EXPECT_FALSE(IsValidName(std::string(kMaxNameLength + 1, 'A')));
  for (const char* ok : {"billing", "web-1", "a.b_c", "9lives"}) {
    EXPECT_TRUE(IsValidAppName(ok)) << ok;
  }
  for (const char* bad : {"", "-x", ".x", "a b", "a=b", "a/b", "a:b"}) {
    EXPECT_FALSE(IsValidAppName(bad)) << bad;
  }
  EXPECT_FALSE(IsValidAppName(std::string(kMaxAppNameLength + 1, 'a')));
}

// A secret that changes how the program is loaded or started would run
// code in the process that receives every secret: such names are refused
// wherever a name comes in.
TEST(SecretsFileTest, ProgramControlNamesAreRefused) {
  for (const char* bad : {"LD_PRELOAD", "LD_LIBRARY_PATH", "LD_AUDIT", "GLIBC_TUNABLES",
                          "MALLOC_CHECK_", "GCONV_PATH", "TMPDIR", "TZDIR", "PATH",
                          "BASH_ENV", "ENV", "SHELLOPTS", "PS4", "IFS", "BASH_FUNC_x",
                          "PYTHONPATH", "PYTHONSTARTUP", "PERL5OPT", "RUBYOPT",
                          "NODE_OPTIONS", "JAVA_TOOL_OPTIONS"}) {
    EXPECT_TRUE(IsValidName(bad)) << bad;  // the grammar allows them...
    EXPECT_TRUE(IsProgramControlName(bad)) << bad;
    Status s = CheckName(bad);  // ...set, import and the parser do not
    EXPECT_EQ(s.code(), StatusCode::kInvalidArgument) << bad;
    EXPECT_NE(s.message().find("refused variable name"), std::string::npos) << s.message();
  }
  for (const char* ok : {"DB_PASSWORD", "LDAP_PASSWORD", "PATH_PREFIX", "PYTHON_API_KEY",
                         "ENVIRONMENT", "NODE_ENV", "TZ", "HOME_TOKEN", "MALLOC"}) {
    EXPECT_TRUE(CheckName(ok).ok()) << ok;
  }
  // In a file (written by someone who could Encrypt under the key), the
  // line is damaged and keeps its name, so `rm` can remove it.
  auto f = SecretsFile::Parse(Header() + "\n" + EntryLine("LD_PRELOAD", SampleBlob()) + "\n" +
                              EntryLine("A", SampleBlob()) + "\n");
  ASSERT_TRUE(f.ok()) << f.status().ToString();
  ASSERT_EQ(f->Damaged().size(), 1u);
  EXPECT_EQ(f->Damaged()[0].name, "LD_PRELOAD");
  EXPECT_EQ(f->Find("LD_PRELOAD"), nullptr);
  EXPECT_NE(f->Find("A"), nullptr);
}

TEST(SecretsFileTest, NewFileSerialisesItsHeader) {
  auto f = SecretsFile::New("billing", kKey);
  ASSERT_TRUE(f.ok());
  EXPECT_EQ(f->Serialize(), Header() + "\n");
  EXPECT_FALSE(SecretsFile::New("bad app", kKey).ok());
  EXPECT_FALSE(SecretsFile::New("billing", "has space").ok());
}

TEST(SecretsFileTest, RoundTripKeepsCommentsAndBlankLinesVerbatim) {
  const std::string text = Header() +
                           "\n"
                           "# database\n"
                           "\n" +
                           EntryLine("DB_PASSWORD", SampleBlob()) +
                           "\n"
                           "   # indented comment  \n" +
                           EntryLine("API_TOKEN", SampleBlob()) + "\n";
  auto f = SecretsFile::Parse(text);
  ASSERT_TRUE(f.ok()) << f.status().ToString();
  EXPECT_EQ(f->app(), "billing");
  EXPECT_EQ(f->key(), kKey);
  EXPECT_EQ(f->EntryCount(), 2u);
  EXPECT_TRUE(f->Damaged().empty());
  EXPECT_EQ(f->Serialize(), text);
  int line = 0;
  const Line* e = f->Find("API_TOKEN", &line);
  ASSERT_NE(e, nullptr);
  EXPECT_EQ(line, 6);
  EXPECT_EQ(e->blob, SampleBlob());
  EXPECT_EQ(f->Find("NOPE"), nullptr);
}

TEST(SecretsFileTest, SetChangesOnlyItsLine) {
  const std::string text = Header() + "\n# c\n" + EntryLine("A", SampleBlob()) +
                           "\n" + EntryLine("B", SampleBlob()) + "\n";
  auto f = SecretsFile::Parse(text);
  ASSERT_TRUE(f.ok());
  Bytes other = SampleBlob();
  other.back() ^= 1;
  f->Set("A", other);
  const std::string want = Header() + "\n# c\n" + EntryLine("A", other) + "\n" +
                           EntryLine("B", SampleBlob()) + "\n";
  EXPECT_EQ(f->Serialize(), want);
  f->Set("C", other);  // appended
  EXPECT_EQ(f->Serialize(), want + EntryLine("C", other) + "\n");
  EXPECT_EQ(f->Remove("A"), 1);
  EXPECT_EQ(f->Remove("A"), 0);
  EXPECT_EQ(f->Serialize(), Header() + "\n# c\n" +
                                EntryLine("B", SampleBlob()) + "\n" +
                                EntryLine("C", other) + "\n");
}

TEST(SecretsFileTest, DamagedLinesAreNamedByLineAndSurviveRewrites) {
  const std::string text = Header() + "\n" + EntryLine("A", SampleBlob()) +
                           "\n"
                           "B=enc:v1:@@notbase64\n"
                           "just some words\n"
                           "1BAD=enc:v1:AAAA\n"
                           "C=plaintext\n"
                           "D=enc:v1:\n" +
                           EntryLine("A", SampleBlob()) + "\n";
  auto f = SecretsFile::Parse(text);
  ASSERT_TRUE(f.ok()) << f.status().ToString();
  const std::vector<Damage> d = f->Damaged();
  ASSERT_EQ(d.size(), 6u);
  EXPECT_EQ(d[0].line, 3);
  EXPECT_EQ(d[0].name, "B");
  EXPECT_NE(d[0].reason.find("base64"), std::string::npos) << d[0].reason;
  EXPECT_EQ(d[1].line, 4);
  EXPECT_EQ(d[1].name, "");
  EXPECT_EQ(d[2].line, 5);
  EXPECT_NE(d[2].reason.find("invalid variable name"), std::string::npos);
  EXPECT_EQ(d[3].line, 6);
  EXPECT_EQ(d[3].name, "C");
  EXPECT_EQ(d[4].line, 7);
  EXPECT_EQ(d[5].line, 8);  // the duplicate of A
  EXPECT_NE(d[5].reason.find("already defined on line 2"), std::string::npos)
      << d[5].reason;
  // The good entry still reads; the damaged ones name themselves.
  EXPECT_NE(f->Find("A"), nullptr);
  EXPECT_EQ(f->DamageOf("B")->line, 3);
  EXPECT_FALSE(f->DamageOf("Z").has_value());

  // Setting another name keeps every damaged line byte for byte.
  f->Set("Z", SampleBlob());
  EXPECT_EQ(f->Serialize(), text + EntryLine("Z", SampleBlob()) + "\n");
  // Setting a damaged name replaces its line in place (a repair).
  f->Set("B", SampleBlob());
  EXPECT_EQ(f->Damaged().size(), 5u);
  int line = 0;
  ASSERT_NE(f->Find("B", &line), nullptr);
  EXPECT_EQ(line, 3);
}

TEST(SecretsFileTest, SetOfADuplicatedNameLeavesOneLine) {
  const std::string text = Header() + "\n" + EntryLine("A", SampleBlob()) +
                           "\n# between\n" + EntryLine("A", SampleBlob()) +
                           "\n";
  auto f = SecretsFile::Parse(text);
  ASSERT_TRUE(f.ok());
  EXPECT_TRUE(f->DamageOf("A").has_value());
  f->Set("A", SampleBlob());
  EXPECT_TRUE(f->Damaged().empty());
  EXPECT_EQ(f->Serialize(),
            Header() + "\n" + EntryLine("A", SampleBlob()) + "\n# between\n");
}

TEST(SecretsFileTest, CarriageReturnsAndAMissingFinalNewline) {
  const std::string text =
      Header() + "\r\n" + EntryLine("A", SampleBlob()) + "\r\n# c";
  auto f = SecretsFile::Parse(text);
  ASSERT_TRUE(f.ok()) << f.status().ToString();
  EXPECT_TRUE(f->Damaged().empty());
  ASSERT_NE(f->Find("A"), nullptr);
  EXPECT_EQ(f->Find("A")->blob, SampleBlob());
  // Lines are written back as read; only the final newline is added.
  EXPECT_EQ(f->Serialize(), text + "\n");
}

TEST(SecretsFileTest, BadHeadersAreRefusedWithLineOne) {
  const std::string k = std::string(" key=") + kKey;
  for (const std::string& bad :
       {std::string(""), std::string("DB=enc:v1:AAAA\n"),
        std::string("# envelope-secretsv1 app=a") + k,
        std::string("# envelope-secrets v2 app=a") + k,
        std::string("# envelope-secrets app=a") + k,
        std::string("# envelope-secrets v1") + k,
        std::string("# envelope-secrets v1 app=a"),
        std::string("# envelope-secrets v1 app=a app=b") + k,
        std::string("# envelope-secrets v1 app=a/b") + k,
        std::string("# envelope-secrets v1 app=a flags=x") + k}) {
    auto f = SecretsFile::Parse(bad, "app.env");
    ASSERT_FALSE(f.ok()) << bad;
    EXPECT_EQ(f.status().code(), StatusCode::kCorruption);
    EXPECT_EQ(f.status().message().rfind("app.env:1: ", 0), 0u)
        << f.status().message();
  }
  auto v2 = SecretsFile::Parse("# envelope-secrets v2 app=a" + k);
  EXPECT_NE(v2.status().message().find("unsupported format version"),
            std::string::npos);
}

TEST(SecretsFileTest, OversizedFileIsRefused) {
  std::string text = Header() + "\n";
  text.resize(kMaxFileSizeInBytes + 1, '#');
  EXPECT_EQ(SecretsFile::Parse(text).status().code(), StatusCode::kCorruption);
}

TEST(SecretsFileTest, EnvironmentSizeBoundFromBlobs) {
  auto f = SecretsFile::Parse(Header() + "\n" + EntryLine("AB", SampleBlob()) +
                              "\n" + EntryLine("C", SampleBlob()) + "\n# c\nD=damaged\n");
  ASSERT_TRUE(f.ok());
  // "AB=<value>\0" and "C=<value>\0", each value at most the blob's size;
  // the damaged line is not counted.
  const size_t blob = SampleBlob().size();
  EXPECT_EQ(f->EnvironmentSizeOfEntries(), (2 + blob + 2) + (1 + blob + 2));
  EXPECT_EQ(f->EnvironmentSizeOfEntries({"AB"}), 1 + blob + 2);
}

}  // namespace
}  // namespace envelope::secrets
