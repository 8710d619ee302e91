// Writes the seed corpus of every fuzz target: small valid inputs, made by
// the project's own encoders under the fixed test keys of fuzz_util.h, and
// near-valid ones (truncated, one field off). The output is committed in
// tests/fuzz/corpus/; rerun after a format change:
//
//   scripts/build.sh sanitize --target fuzz_make_seeds
//   build-asan/tests/fuzz/fuzz_make_seeds tests/fuzz/corpus
//
// Sealed seeds use random nonces, so a rerun changes their bytes but not
// what they cover.
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "core/crypto/hash.h"
#include "core/format/chunk_cipher.h"
#include "core/format/content_file.h"
#include "core/format/header_io.h"
#include "core/format/name_codec.h"
#include "keyservice/ciphertext_blob.h"
#include "kms/sigv4.h"
#include "tests/fuzz/fuzz_util.h"
#include "tools/secrets_file.h"

namespace envelope {
namespace {

using json = nlohmann::json;
namespace fs = std::filesystem;

fs::path g_out;

void Put(const std::string& target, const std::string& name, ByteView data) {
  fs::path dir = g_out / target;
  fs::create_directories(dir);
  std::ofstream f(dir / name, std::ios::binary | std::ios::trunc);
  f.write(reinterpret_cast<const char*>(data.data()), static_cast<std::streamsize>(data.size()));
  FUZZ_CHECK(f.good());
}
void Put(const std::string& target, const std::string& name, std::string_view text) {
  Put(target, name, AsBytes(text));
}

Bytes Truncated(ByteView b, size_t n) { return Bytes(b.begin(), b.begin() + std::min(n, b.size())); }

// --- format ---

format::FileHeader Header(bool xattr, uint32_t chunk_size) {
  auto layout = format::ChunkLayout::ForVolume(xattr, chunk_size);
  FUZZ_CHECK(layout.ok());
  auto commitment = format::ComputeCommitment(fuzz::Secret(fuzz::kDek), fuzz::kFileId);
  FUZZ_CHECK(commitment.ok());
  auto h = format::NewFileHeader(*layout, fuzz::kFileId, *commitment, AsBytes("wrapped-dek"));
  FUZZ_CHECK(h.ok());
  return *h;
}

void FileHeaderSeeds() {
  Bytes b;
  Header(false, 4096).EncodeTo(&b);
  Put("file_header", "one_slot", b);
  Put("file_header", "short", Truncated(b, 600));

  format::FileHeader two = Header(false, 4096);
  two.slots[1].generation = 2;
  two.slots[1].wrapped_dek = Bytes(300, 0xab);
  Bytes t;
  two.EncodeTo(&t);
  Put("file_header", "two_slots", t);
  Bytes torn = t;
  torn[format::SlotOffset(1) + 100] ^= 1;
  Put("file_header", "torn_slot", torn);

  format::FileHeader big = Header(false, 1 << 20);
  big.slots[0].wrapped_dek = Bytes(format::kSlotBlobCapacityInBytes, 0x5a);
  Bytes g;
  big.EncodeTo(&g);
  Put("file_header", "full_slot_1mib_chunks", g);

  // Issue 11: the next generation of 2^64 - 1 wraps to 0 (an empty slot).
  format::FileHeader last = Header(false, 4096);
  last.slots[0].generation = UINT64_MAX;
  Bytes l;
  last.EncodeTo(&l);
  Put("file_header", "generation_max", l);

  Bytes x;
  Header(true, 4096).EncodeTo(&x);
  Put("file_header", "xattr_mode", x);
}

void ChunkReaderSeeds() {
  format::FileHeader h = Header(false, 4096);
  Bytes header_bytes;
  h.EncodeTo(&header_bytes);
  auto layout = format::ChunkLayout::ForVolume(false, 4096);
  for (size_t size : {0, 1, 100, 4096, 4097, 8200}) {
    fuzz::MemFile file(ByteView{});
    auto cipher = format::ChunkCipher::New(fuzz::Secret(fuzz::kDek), h);
    FUZZ_CHECK(cipher.ok());
    FUZZ_CHECK(format::WriteNewFile(file.fd(), h, &*cipher).ok());
    auto cipher2 = format::ChunkCipher::New(fuzz::Secret(fuzz::kDek), h);
    format::ContentFile content(file.fd(), *layout, std::move(*cipher2));
    Bytes plain(size);
    for (size_t i = 0; i < size; ++i) plain[i] = static_cast<uint8_t>('a' + i % 26);
    FUZZ_CHECK(content.Write(0, plain).ok());
    Bytes backing(layout->BackingSize(size));
    auto n = PreadFull(file.fd(), backing, 0);
    FUZZ_CHECK(n.ok() && *n == backing.size());
    Bytes chunks(backing.begin() + header_bytes.size(), backing.end());
    Put("chunk_reader", "plain_" + std::to_string(size), chunks);
    if (size == 4097) {
      Put("chunk_reader", "cut_in_last_chunk", Truncated(chunks, chunks.size() - 1));
      Put("chunk_reader", "cut_to_first_chunk", Truncated(chunks, 4096 + 28));
      Bytes flipped = chunks;
      flipped[10] ^= 0x80;
      Put("chunk_reader", "flipped_bit", flipped);
    }
    if (size == 0) {
      // Issue 11: a file cut to header + 28 bytes must not read as empty.
      Bytes forged(chunks.size(), 0x5a);
      Put("chunk_reader", "forged_empty_chunk", forged);
    }
  }
}

void NameCodecSeeds() {
  auto codec = format::NameCodec::New(fuzz::Secret(fuzz::kNameKey));
  FUZZ_CHECK(codec.ok());
  const format::DirId dir = fuzz::kDirId;
  auto short_name = codec->EncodeName("report.pdf", dir);
  Put("name_codec", "encoded_short", short_name->backing_name);
  auto long_name = codec->EncodeName(std::string(200, 'n'), dir);
  Put("name_codec", "encoded_long_content", long_name->long_name_content);
  Put("name_codec", "long_backing_name", long_name->backing_name);
  Put("name_codec", "long_side_file", long_name->backing_name + ".name");
  auto target = codec->EncodeSymlinkTarget("../a/b/target", dir);
  Put("name_codec", "encoded_target", *target);
  Put("name_codec", "plain_name", "notes.txt");
  Put("name_codec", "plain_dots", "..");
  Put("name_codec", "dirid_file", ".envelopefs.dirid");
  Put("name_codec", "max_short_name", std::string(175, 'x'));
}

// --- key service ---

void CiphertextBlobSeeds() {
  auto material = fuzz::Secret(fuzz::kBlobMaterial);
  keyservice::BlobHeader h{fuzz::kBlobKeyId, fuzz::kBlobKeyVersion};
  for (size_t size : {1, 32, 100}) {
    Bytes plain(size, 0x42);
    auto blob = keyservice::SealBlob(material, h, {}, plain);
    FUZZ_CHECK(blob.ok());
    Put("ciphertext_blob", "no_context_" + std::to_string(size), *blob);
    auto with = keyservice::SealBlob(material, h, {{"app", "fuzz"}}, plain);
    Put("ciphertext_blob", "context_" + std::to_string(size), *with);
    if (size == 32) {
      Put("ciphertext_blob", "truncated", Truncated(*with, keyservice::kBlobOverheadInBytes - 1));
      Bytes v2 = *with;
      v2[2] = 2;
      Put("ciphertext_blob", "version_2", v2);
    }
  }
  Put("ciphertext_blob", "key_id_text", "1B4E28BA-2fa1-11d2-883f-0016d3cca427");
}

void KmsRequestSeeds() {
  const std::vector<std::pair<std::string, json>> bodies = {
      {"encrypt", {{"KeyId", "alias/fuzz"}, {"Plaintext", "c2VjcmV0"},
                   {"EncryptionContext", {{"app", "fuzz"}}}, {"GrantTokens", {"t"}}}},
      {"decrypt", {{"CiphertextBlob", "RUsBAAAA"}, {"KeyId", "1b4e28ba-2fa1-11d2-883f-0016d3cca427"}}},
      {"generate_data_keys", {{"KeyId", "k"}, {"EncryptionContexts", {{{"a", "1"}}, json::object()}},
                              {"NumberOfBytes", 32}}},
      {"create_key", {{"Description", "d"}, {"Tags", {{{"TagKey", "team"}, {"TagValue", "x"}}}},
                      {"BypassPolicyLockoutSafetyCheck", false}}},
      {"wrong_types", {{"KeyId", 1}, {"Plaintext", "not base64!"}, {"Limit", "10"},
                       {"EncryptionContext", {{"a", 1}}}, {"Tags", {1}}}},
      {"retire", {{"KeyId", "k"}, {"KeyVersions", {1, 2}}, {"PendingWindowInDays", 7}}},
  };
  for (const auto& [name, body] : bodies) Put("kms_request", name, body.dump());
  Put("kms_request", "not_json", "{\"KeyId\": ");
}

void KmsServiceSeeds() {
  const std::vector<std::tuple<std::string, std::string, std::string>> calls = {
      {"create_key", "rTrentService.CreateKey", R"({"Description":"fuzz","Tags":[{"TagKey":"a","TagValue":"b"}]})"},
      {"describe", "rTrentService.DescribeKey", R"({"KeyId":"@KEY@"})"},
      {"list_keys", "uTrentService.ListKeys", R"({"Limit":5})"},
      {"encrypt", "rTrentService.Encrypt", R"({"KeyId":"alias/fuzz","Plaintext":"aGVsbG8=","EncryptionContext":{"app":"fuzz"}})"},
      {"decrypt", "rTrentService.Decrypt", R"({"CiphertextBlob":"@BLOB@","EncryptionContext":{"app":"fuzz"}})"},
      {"decrypt_as_user", "uTrentService.Decrypt", R"({"CiphertextBlob":"@BLOB@","EncryptionContext":{"app":"fuzz"},"KeyId":"@KEY@"})"},
      {"reencrypt", "rTrentService.ReEncrypt", R"({"CiphertextBlob":"@BLOB@","SourceEncryptionContext":{"app":"fuzz"},"DestinationKeyId":"alias/fuzz"})"},
      {"data_key", "kTrentService.GenerateDataKey", R"({"KeyId":"@KEY@","KeySpec":"AES_256"})"},
      {"data_keys", "rEnvelopeKeyService.GenerateDataKeys", R"({"KeyId":"@KEY@","EncryptionContexts":[{"a":"1"},{"a":"2"}]})"},
      {"random", "rTrentService.GenerateRandom", R"({"NumberOfBytes":16})"},
      {"alias", "rTrentService.CreateAlias", R"({"AliasName":"alias/other","TargetKeyId":"@KEY@"})"},
      {"policy", "rTrentService.GetKeyPolicy", R"({"KeyId":"@KEY@","PolicyName":"default"})"},
      {"rotate", "rTrentService.RotateKeyOnDemand", R"({"KeyId":"@KEY@"})"},
      {"tag", "rTrentService.TagResource", R"({"KeyId":"@KEY@","Tags":[{"TagKey":"k","TagValue":"v"}]})"},
      {"tail_audit", "rEnvelopeKeyService.TailAudit", R"({"Count":3})"},
      {"create_grant", "rTrentService.CreateGrant", R"({"KeyId":"@KEY@","GranteePrincipal":"user:nobody","Operations":["Decrypt","CreateGrant"],"Constraints":{"EncryptionContextSubset":{"App":"fuzz"}},"Name":"n"})"},
      {"list_grants", "rTrentService.ListGrants", R"({"KeyId":"@KEY@","Limit":2})"},
      {"retire_grant", "uTrentService.RetireGrant", R"({"GrantToken":"egt1.YWJj","GrantTokens":["x"]})"},
      {"policy_condition", "rTrentService.PutKeyPolicy", R"({"KeyId":"@KEY@","PolicyName":"default","Policy":"{\"Statement\":{\"Effect\":\"Allow\",\"Principal\":\"*\",\"Action\":\"kms:*\",\"Resource\":\"*\",\"Condition\":{\"ForAnyValue:StringLike\":{\"kms:EncryptionContextKeys\":\"a*\"}}}}"})"},
      {"create_hmac", "rTrentService.CreateKey", R"({"KeySpec":"HMAC_256","KeyUsage":"GENERATE_VERIFY_MAC"})"},
      {"create_ec", "rTrentService.CreateKey", R"({"KeySpec":"ECC_NIST_P256","KeyUsage":"SIGN_VERIFY"})"},
      {"sign", "rTrentService.Sign", R"({"KeyId":"@KEY@","Message":"aGVsbG8=","SigningAlgorithm":"ECDSA_SHA_256","MessageType":"RAW"})"},
      {"generate_mac", "rTrentService.GenerateMac", R"({"KeyId":"@KEY@","Message":"aGVsbG8=","MacAlgorithm":"HMAC_SHA_256"})"},
      {"data_key_pair", "rTrentService.GenerateDataKeyPair", R"({"KeyId":"@KEY@","KeyPairSpec":"ECC_NIST_P256"})"},
      {"rsa_decrypt", "rTrentService.Decrypt", R"({"KeyId":"@KEY@","CiphertextBlob":"AAAA","EncryptionAlgorithm":"RSAES_OAEP_SHA_256"})"},
      {"unknown_op", "rTrentService.Nothing", "{}"},
      {"bad_json", "rTrentService.Encrypt", R"({"KeyId":)"},
  };
  for (const auto& [name, target, body] : calls) Put("kms_service", name, target + "\n" + body);
  // Issue 11: an unknown target that is not UTF-8 is echoed in the error.
  Put("kms_service", "target_not_utf8", "rTrentService.\xff\n{}");
}

std::string RequestText(const kms::HttpRequestParts& r) {
  std::string s = r.method + " " + r.path + (r.query.empty() ? "" : "?" + r.query) + "\n";
  for (const auto& [k, v] : r.headers) s += k + ": " + v + "\n";
  return s + "\n" + r.body;
}

void SigV4Seeds() {
  kms::Credentials creds;
  creds.access_key_id = std::string(fuzz::kAccessKeyId);
  creds.secret_access_key = fuzz::Secret(AsBytes(fuzz::kSecretAccessKey));
  auto make = [](std::string path, std::string query) {
    kms::HttpRequestParts r;
    r.method = "POST";
    r.path = std::move(path);
    r.query = std::move(query);
    r.headers = {{"Host", "127.0.0.1:7787"},
                 {"Content-Type", "application/x-amz-json-1.1"},
                 {"X-Amz-Target", "TrentService.Decrypt"}};
    r.body = R"({"CiphertextBlob":"RUsB"})";
    return r;
  };
  kms::HttpRequestParts plain = make("/", "");
  FUZZ_CHECK(kms::SignRequest(creds, "local", "kms", fuzz::kSigV4Date, &plain).ok());
  Put("sigv4", "signed", RequestText(plain));
  kms::HttpRequestParts odd = make("/a/./b/../c%20d//", "b=2&a=1&a&c=%zz");
  odd.headers.emplace_back("X-Custom", "  two   spaces ");
  odd.headers.emplace_back("x-custom", "again");
  FUZZ_CHECK(kms::SignRequest(creds, "us-east-1", "kms", fuzz::kSigV4Date, &odd).ok());
  Put("sigv4", "signed_odd_path_query_headers", RequestText(odd));
  kms::HttpRequestParts token = make("/", "");
  creds.session_token = "session-token";
  FUZZ_CHECK(kms::SignRequest(creds, "local", "kms", fuzz::kSigV4Date, &token).ok());
  token.headers.emplace_back("X-Amz-Content-Sha256",
                             HexEncode(crypto::Sha256(AsBytes(token.body))));
  Put("sigv4", "signed_token_content_sha", RequestText(token));
  kms::HttpRequestParts unsigned_request = make("/", "");
  unsigned_request.headers.emplace_back(
      "Authorization",
      "AWS4-HMAC-SHA256 Credential=AKIDFUZZEXAMPLE/20260101/local/kms/aws4_request, "
      "SignedHeaders=host;x-amz-date, Signature=" + std::string(64, '0'));
  unsigned_request.headers.emplace_back("X-Amz-Date", "20260101T000000Z");
  Put("sigv4", "wrong_signature", RequestText(unsigned_request));
  Put("sigv4", "no_auth", RequestText(make("/", "")));
}

// --- secrets ---

void SecretsSeeds() {
  Put("dotenv", "simple", "# comment\nexport DB_USER=app\nDB_PASSWORD='p@ss \"word\"'\n");
  Put("dotenv", "quotes",
      "TLS_KEY=\"-----BEGIN-----\\nabc\\n-----END-----\"\nMULTI='line1\nline2'\r\nEMPTY=\n"
      "ESC=\"\\t\\r\\\\\\\"\\$\\`\"\nTRAIL=value # comment\n");
  Put("dotenv", "bad_name", "1BAD=x\n");
  Put("dotenv", "duplicate", "A=1\nA=2\n");
  Put("dotenv", "unterminated", "A='open\n");

  auto file = secrets::SecretsFile::New(
      "billing", "arn:aws:kms:local:000000000000:key/1b4e28ba-2fa1-11d2-883f-0016d3cca427");
  FUZZ_CHECK(file.ok());
  auto material = fuzz::Secret(fuzz::kBlobMaterial);
  keyservice::BlobHeader h{fuzz::kBlobKeyId, fuzz::kBlobKeyVersion};
  auto blob = keyservice::SealBlob(material, h, {}, AsBytes("\x01value"));
  file->Set("DB_PASSWORD", *blob);
  file->Set("API_TOKEN", Bytes(80, 7));
  std::string text = file->Serialize();
  Put("secrets_file", "two_entries", text);
  Put("secrets_file", "comments_damage_duplicate",
      text + "# a comment\n\nBROKEN=enc:v1:!!!\nDB_PASSWORD=enc:v1:RUsB\nnot a line");
  Put("secrets_file", "bad_header", "# envelope-secrets v2 app=x key=y\n");
  // Once failed: an entry ending in '\r' with no newline after it.
  Put("secrets_file", "crlf_entry_at_end", "# envelope-secrets v1 app=l key=B\nS=enc:v1:RU4o\r");
}

}  // namespace
}  // namespace envelope

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: %s CORPUS_DIR\n", argv[0]);
    return 2;
  }
  envelope::g_out = argv[1];
  envelope::FileHeaderSeeds();
  envelope::ChunkReaderSeeds();
  envelope::NameCodecSeeds();
  envelope::CiphertextBlobSeeds();
  envelope::KmsRequestSeeds();
  envelope::KmsServiceSeeds();
  envelope::SigV4Seeds();
  envelope::SecretsSeeds();
  return 0;
}
