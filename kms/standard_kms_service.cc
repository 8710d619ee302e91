#include "kms/standard_kms_service.h"

#include <cmath>
#include <cstdio>

namespace envelope::kms {

using json = nlohmann::json;

namespace {

// A rotation date as a marker: milliseconds are what AWS reports.
std::string DateMarker(const char* what, double epoch_seconds) {
  char text[64];
  std::snprintf(text, sizeof(text), "%s:%.3f", what, epoch_seconds);
  return text;
}

double NumberField(const json& object, const char* name) {
  auto it = object.find(name);
  return it != object.end() && it->is_number() ? it->get<double>() : 0.0;
}

}  // namespace

StandardKms::StandardKms(std::unique_ptr<KmsClient> client) : client_(std::move(client)) {}

std::string StandardKms::Name() const { return client_->endpoint().ToString(); }

StatusOr<json> StandardKms::DescribeKeyMetadata(const std::string& key) {
  ENVELOPE_ASSIGN_OR_RETURN(json r, client_->Call("TrentService.DescribeKey", {{"KeyId", key}}));
  auto it = r.find("KeyMetadata");
  if (it == r.end() || !it->is_object() || !it->contains("KeyId") || !(*it)["KeyId"].is_string() ||
      !it->contains("Arn") || !(*it)["Arn"].is_string()) {
    return Status::Internal("DescribeKey " + key + ": " + Name() + " named no KeyId and Arn");
  }
  return std::move(*it);
}

KeyInfo StandardKms::StandardKeyInfo(const json& m) {
  KeyInfo info;
  info.key_id = m["KeyId"].get<std::string>();
  info.arn = m["Arn"].get<std::string>();
  auto state = m.find("KeyState");
  info.state = state != m.end() && state->is_string() ? state->get<std::string>() : "";
  return info;
}

StatusOr<KeyInfo> StandardKms::DescribeKey(const std::string& key) {
  ENVELOPE_ASSIGN_OR_RETURN(json m, DescribeKeyMetadata(key));
  return StandardKeyInfo(m);
}

StatusOr<std::vector<json>> StandardKms::ListRotations(const std::string& key_id) {
  std::vector<json> all;
  ENVELOPE_RETURN_IF_ERROR(client_->CallEachPage(
      "TrentService.ListKeyRotations", {{"KeyId", key_id}, {"Limit", 1000}}, [&](json& page) {
        auto rotations = page.find("Rotations");
        if (rotations != page.end() && rotations->is_array()) {
          for (json& r : *rotations) all.push_back(std::move(r));
        }
      }));
  return all;
}

StatusOr<CurrentVersion> StandardKms::CurrentVersionByDate(const json& metadata) {
  CurrentVersion v;
  const std::string key_id = metadata["KeyId"].get<std::string>();
  auto rotations = ListRotations(key_id);
  if (!rotations.ok()) {
    // A policy may allow the cryptographic operations but not this one:
    // the version is then unknown, which callers handle (every blob is
    // treated as old). Only an unreachable service is an error.
    if (rotations.status().code() == StatusCode::kUnavailable) return rotations.status();
    return v;
  }
  double newest = 0;
  for (const json& r : *rotations) newest = std::max(newest, NumberField(r, "RotationDate"));
  if (newest > 0) {
    // The count too: two rotations can share a date at the resolution a
    // service reports (envelope-keyd: seconds).
    v.marker = DateMarker("rotated", newest) + "/" + std::to_string(rotations->size());
    v.since = newest;
  } else {
    v.since = NumberField(metadata, "CreationDate");
    v.marker = DateMarker("created", v.since);
  }
  return v;
}

StatusOr<CurrentVersion> StandardKms::DescribeCurrentVersion(const std::string& key) {
  ENVELOPE_ASSIGN_OR_RETURN(json m, DescribeKeyMetadata(key));
  return CurrentVersionByDate(m);
}

StatusOr<std::vector<DataKey>> StandardKms::GenerateDataKeys(
    const std::string& key, const std::vector<EncryptionContextMap>& contexts) {
  std::vector<DataKey> keys;
  keys.reserve(contexts.size());
  for (const EncryptionContextMap& context : contexts) {
    auto dk = client_->GenerateDataKey(key, context);
    if (!dk.ok()) {
      if (!keys.empty()) break;  // keep the ones made
      return dk.status();
    }
    keys.push_back(std::move(*dk));
  }
  return keys;
}

StatusOr<crypto::SecretBytes> StandardKms::Decrypt(ByteView blob,
                                                   const EncryptionContextMap& context,
                                                   const std::string& key_id) {
  return client_->Decrypt(blob, context, key_id);
}

StatusOr<Bytes> StandardKms::Encrypt(const std::string& key, ByteView plaintext,
                                     const EncryptionContextMap& context) {
  return client_->Encrypt(key, plaintext, context);
}

StatusOr<Bytes> StandardKms::ReEncrypt(ByteView blob, const std::string& source_key_id,
                                       const EncryptionContextMap& source_context,
                                       const std::string& destination_key,
                                       const EncryptionContextMap& destination_context) {
  return client_->ReEncrypt(blob, source_key_id, source_context, destination_key,
                            destination_context);
}

void StandardKms::CloseConnections() { client_->CloseIdleConnections(); }

}  // namespace envelope::kms
