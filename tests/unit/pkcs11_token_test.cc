// Pkcs11Token against the real SoftHSM2 module (Debian's softhsm2), on a
// token made for each test in a temporary directory. The key's attributes
// are read back through a session of the test's own, not through the class.
#include "keyservice/pkcs11_token.h"

#include <gtest/gtest.h>
#include <p11-kit/p11-kit.h>
#include <p11-kit/pkcs11.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstring>
#include <string>
#include <vector>

#include "tests/unit/test_files.h"

namespace envelope::keyservice {
namespace {

constexpr char kModule[] = "/usr/lib/softhsm/libsofthsm2.so";

class Pkcs11TokenTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_EQ(::access(kModule, R_OK), 0) << "SoftHSM2 is not installed: run scripts/setup.sh";
    const std::string conf = dir_.File("softhsm2.conf");
    ASSERT_EQ(::mkdir(dir_.File("tokens").c_str(), 0700), 0);
    FILE* f = std::fopen(conf.c_str(), "w");
    ASSERT_NE(f, nullptr);
    std::fprintf(f, "directories.tokendir = %s\nobjectstore.backend = file\nlog.level = ERROR\n",
                 dir_.File("tokens").c_str());
    std::fclose(f);
    ASSERT_EQ(::setenv("SOFTHSM2_CONF", conf.c_str(), 1), 0);
    const std::string init =
        "softhsm2-util --init-token --free --label unit --so-pin 5678 --pin 1234 >/dev/null";
    ASSERT_EQ(std::system(init.c_str()), 0);
  }
  void TearDown() override { ::unsetenv("SOFTHSM2_CONF"); }

  static std::string Uri(const std::string& rest = "") {
    return std::string("pkcs11:token=unit;object=root") + rest + "?module-path=" + kModule;
  }
  static crypto::SecretBytes Pin(const char* pin) {
    return std::move(*crypto::SecretBytes::CopyOf(AsBytes(std::string_view(pin))));
  }

  testing::TempDir dir_;
};

TEST_F(Pkcs11TokenTest, GeneratesAKeyThatSealsAndOpens) {
  auto token = Pkcs11Token::Open(Uri(), Pin("1234"));
  ASSERT_TRUE(token.ok()) << token.status().ToString();
  EXPECT_EQ((*token)->description(), "token unit, key root");
  EXPECT_EQ((*token)->FindKey().status().code(), StatusCode::kNotFound);
  auto key = (*token)->GenerateKey();
  ASSERT_TRUE(key.ok()) << key.status().ToString();
  auto found = (*token)->FindKey();
  ASSERT_TRUE(found.ok());
  EXPECT_EQ(*found, *key);

  const std::string secret = "thirty-two bytes of root key!!!!";
  auto sealed = (*token)->Seal(*key, AsBytes(secret), AsBytes("aad"));
  ASSERT_TRUE(sealed.ok()) << sealed.status().ToString();
  ASSERT_EQ(sealed->size(), 12 + secret.size() + 16);
  // The value does not appear in what was sealed.
  EXPECT_EQ(std::string(sealed->begin(), sealed->end()).find(secret.substr(0, 8)),
            std::string::npos);
  auto opened = (*token)->Open(*key, *sealed, AsBytes("aad"));
  ASSERT_TRUE(opened.ok()) << opened.status().ToString();
  EXPECT_TRUE(opened->in_secure_heap());
  EXPECT_EQ(std::string(opened->view().begin(), opened->view().end()), secret);
  // Two seals of the same value differ (a fresh nonce each).
  auto again = (*token)->Seal(*key, AsBytes(secret), AsBytes("aad"));
  ASSERT_TRUE(again.ok());
  EXPECT_NE(*again, *sealed);
}

TEST_F(Pkcs11TokenTest, AnythingAlteredDoesNotOpen) {
  auto token = Pkcs11Token::Open(Uri(), Pin("1234"));
  ASSERT_TRUE(token.ok());
  auto key = (*token)->GenerateKey();
  ASSERT_TRUE(key.ok());
  auto sealed = (*token)->Seal(*key, AsBytes("value"), AsBytes("aad"));
  ASSERT_TRUE(sealed.ok());
  EXPECT_EQ((*token)->Open(*key, *sealed, AsBytes("other aad")).status().code(),
            StatusCode::kCorruption);
  for (size_t i : {size_t{0}, size_t{12}, sealed->size() - 1}) {
    Bytes bad = *sealed;
    bad[i] ^= 1;
    EXPECT_EQ((*token)->Open(*key, bad, AsBytes("aad")).status().code(), StatusCode::kCorruption)
        << "byte " << i;
  }
  EXPECT_EQ((*token)->Open(*key, ByteView(sealed->data(), 27), AsBytes("aad")).status().code(),
            StatusCode::kCorruption);
  // The session still works after the failures.
  EXPECT_TRUE((*token)->Open(*key, *sealed, AsBytes("aad")).ok());
}

// Read with a session of the test's own: the key is on the token, private,
// sensitive and cannot be exported.
TEST_F(Pkcs11TokenTest, TheKeyNeverLeavesTheToken) {
  {
    auto token = Pkcs11Token::Open(Uri(), Pin("1234"));
    ASSERT_TRUE(token.ok());
    ASSERT_TRUE((*token)->GenerateKey().ok());
  }
  CK_FUNCTION_LIST* m = p11_kit_module_load(kModule, 0);
  ASSERT_NE(m, nullptr);
  ASSERT_EQ(p11_kit_module_initialize(m), CKR_OK);
  CK_ULONG n = 0;
  ASSERT_EQ(m->C_GetSlotList(CK_TRUE, nullptr, &n), CKR_OK);
  std::vector<CK_SLOT_ID> slots(n);
  ASSERT_EQ(m->C_GetSlotList(CK_TRUE, slots.data(), &n), CKR_OK);
  CK_SESSION_HANDLE h = CK_INVALID_HANDLE;
  for (CK_SLOT_ID slot : slots) {
    CK_TOKEN_INFO info;
    if (m->C_GetTokenInfo(slot, &info) == CKR_OK && std::memcmp(info.label, "unit ", 5) == 0) {
      ASSERT_EQ(m->C_OpenSession(slot, CKF_SERIAL_SESSION, nullptr, nullptr, &h), CKR_OK);
    }
  }
  ASSERT_NE(h, CK_INVALID_HANDLE);
  ASSERT_EQ(m->C_Login(h, CKU_USER, (CK_UTF8CHAR*)"1234", 4), CKR_OK);
  char label[] = "root";
  CK_ATTRIBUTE find[] = {{CKA_LABEL, label, 4}};
  ASSERT_EQ(m->C_FindObjectsInit(h, find, 1), CKR_OK);
  CK_OBJECT_HANDLE obj;
  CK_ULONG count = 0;
  ASSERT_EQ(m->C_FindObjects(h, &obj, 1, &count), CKR_OK);
  ASSERT_EQ(m->C_FindObjectsFinal(h), CKR_OK);
  ASSERT_EQ(count, 1u);
  CK_BBOOL token = 0, priv = 0, sensitive = 0, extractable = 1, never = 0, local = 0;
  CK_ULONG len = 0;
  CK_ATTRIBUTE attrs[] = {{CKA_TOKEN, &token, 1},          {CKA_PRIVATE, &priv, 1},
                          {CKA_SENSITIVE, &sensitive, 1},  {CKA_EXTRACTABLE, &extractable, 1},
                          {CKA_NEVER_EXTRACTABLE, &never, 1}, {CKA_LOCAL, &local, 1},
                          {CKA_VALUE_LEN, &len, sizeof(len)}};
  ASSERT_EQ(m->C_GetAttributeValue(h, obj, attrs, 7), CKR_OK);
  EXPECT_TRUE(token);
  EXPECT_TRUE(priv);
  EXPECT_TRUE(sensitive);
  EXPECT_FALSE(extractable);
  EXPECT_TRUE(never);
  EXPECT_TRUE(local);  // generated on the token
  EXPECT_EQ(len, 32u);
  // Its value cannot be read.
  unsigned char value[32];
  CK_ATTRIBUTE v = {CKA_VALUE, value, sizeof(value)};
  EXPECT_EQ(m->C_GetAttributeValue(h, obj, &v, 1), CKR_ATTRIBUTE_SENSITIVE);
  m->C_Logout(h);
  m->C_CloseSession(h);
  p11_kit_module_finalize(m);
  p11_kit_module_release(m);
}

// A custom key store's session: the URI names the token only, and keys are
// made, found and destroyed by label.
TEST_F(Pkcs11TokenTest, KeysByLabelOnATokenSession) {
  const std::string uri = std::string("pkcs11:token=unit?module-path=") + kModule;
  auto token = Pkcs11Token::OpenToken(uri, Pin("1234"));
  ASSERT_TRUE(token.ok()) << token.status().ToString();
  EXPECT_EQ((*token)->description(), "token unit");
  EXPECT_EQ((*token)->FindKey().status().code(), StatusCode::kInvalidArgument);  // no object
  EXPECT_EQ((*token)->FindKey("k/v1").status().code(), StatusCode::kNotFound);
  auto v1 = (*token)->GenerateKey("k/v1");
  auto v2 = (*token)->GenerateKey("k/v2");
  ASSERT_TRUE(v1.ok() && v2.ok());
  EXPECT_NE(*v1, *v2);
  auto found = (*token)->FindKey("k/v1");
  ASSERT_TRUE(found.ok());
  EXPECT_EQ(*found, *v1);
  auto sealed = (*token)->Seal(*v1, AsBytes("data key"), AsBytes("aad"));
  ASSERT_TRUE(sealed.ok());
  // Another label's key does not open it.
  EXPECT_EQ((*token)->Open(*v2, *sealed, AsBytes("aad")).status().code(), StatusCode::kCorruption);
  ASSERT_TRUE((*token)->Open(*v1, *sealed, AsBytes("aad")).ok());
  ASSERT_TRUE((*token)->DestroyKey(*v1).ok());
  EXPECT_EQ((*token)->FindKey("k/v1").status().code(), StatusCode::kNotFound);
  EXPECT_TRUE((*token)->FindKey("k/v2").ok());
  // The key-naming Open still insists on an object.
  EXPECT_EQ(Pkcs11Token::Open(uri, Pin("1234")).status().code(), StatusCode::kInvalidArgument);
}

TEST_F(Pkcs11TokenTest, RefusesBadUrisAndPins) {
  EXPECT_EQ(Pkcs11Token::Open(Uri(), Pin("0000")).status().code(), StatusCode::kPermissionDenied);
  EXPECT_EQ(Pkcs11Token::Open("file:///etc/passwd", Pin("1234")).status().code(),
            StatusCode::kInvalidArgument);
  EXPECT_EQ(Pkcs11Token::Open("pkcs11:token=unit;object=root", Pin("1234")).status().code(),
            StatusCode::kInvalidArgument);  // no module-path
  EXPECT_EQ(Pkcs11Token::Open(std::string("pkcs11:token=unit?module-path=") + kModule, Pin("1234"))
                .status()
                .code(),
            StatusCode::kInvalidArgument);  // no object
  EXPECT_EQ(Pkcs11Token::Open(Uri() + "&pin-value=1234", Pin("1234")).status().code(),
            StatusCode::kInvalidArgument);
  EXPECT_EQ(Pkcs11Token::Open(std::string("pkcs11:token=nope;object=root?module-path=") + kModule,
                              Pin("1234"))
                .status()
                .code(),
            StatusCode::kNotFound);
}

}  // namespace
}  // namespace envelope::keyservice
