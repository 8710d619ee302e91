// KeydKeyService's one capability that needs no service: reading the
// public label of an envelope-keyd blob (docs/KEYSERVICE.md, "Ciphertext
// blob"). Its calls go to the real daemon in the integration suites.
#include "kms/keyd_key_service.h"

#include <gtest/gtest.h>

#include "kms/standard_kms_service.h"
#include "tests/unit/test_hex.h"

namespace envelope::kms {
namespace {

std::unique_ptr<KmsClient> LazyClient() {
  KmsClient::Options options;
  options.endpoint.kind = Endpoint::kUnix;
  options.endpoint.socket_path = "/nonexistent/kms.sock";  // never connected
  return std::move(*KmsClient::New(std::move(options)));
}

// docs/SECRETS.md's known answer: key 00112233-...-eeff, version 2, 4 bytes sealed.
const Bytes kKeydBlob = envelope::testing::Hex(
    "454b01" "00112233445566778899aabbccddeeff" "02000000" "000000000000000000000000"
    "deadbeef" "000102030405060708090a0b0c0d0e0f");

TEST(KeydKeyServiceTest, ReadsTheLabelOfItsOwnBlobsOnly) {
  KeydKeyService keyd(LazyClient());
  auto v = keyd.VersionOf(kKeydBlob);
  ASSERT_TRUE(v.has_value());
  EXPECT_EQ(v->key_id, "00112233-4455-6677-8899-aabbccddeeff");
  EXPECT_EQ(v->version, 2u);
  EXPECT_EQ(v->plaintext_size, 4u);
  EXPECT_FALSE(keyd.VersionOf(Bytes{1, 2, 2, 0, 0x78}).has_value());  // an AWS-shaped blob
  Bytes truncated(kKeydBlob.begin(), kKeydBlob.end() - 5);
  EXPECT_FALSE(keyd.VersionOf(truncated).has_value());
}

TEST(KeydKeyServiceTest, TheStandardApiTreatsEveryBlobAsOpaque) {
  StandardKms standard(LazyClient());
  EXPECT_FALSE(standard.VersionOf(kKeydBlob).has_value());
}

}  // namespace
}  // namespace envelope::kms
