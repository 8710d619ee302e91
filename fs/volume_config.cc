#include "fs/volume_config.h"

#include <set>

#include <nlohmann/json.hpp>

#include "core/base/base64.h"
#include "core/crypto/hash.h"

namespace envelope::fs {

using json = nlohmann::json;

namespace {
constexpr std::string_view kConfigMacInfo = "envelopefs/v1/config-mac";
constexpr std::string_view kNameKeyInfo = "envelopefs/v1/name-key/aes-siv";
constexpr std::string_view kXattrKeyInfo = "envelopefs/v1/xattr-key/aes-siv";

json ToJson(const VolumeConfig& c) {
  // nlohmann::json keeps object keys sorted, so dump() is canonical.
  return json{{"format", "envelopefs"},
              {"version", kVolumeConfigVersion},
              {"volume_id", c.volume_id},
              {"key_id", c.key_id},
              {"kms_endpoint", c.kms_endpoint},
              {"dek_location", c.dek_in_xattr ? "xattr" : "header"},
              {"chunk_size", c.chunk_size},
              {"wrapped_volume_key", Base64Encode(c.wrapped_volume_key)},
              {"created", c.created}};
}
}  // namespace

std::map<std::string, std::string> VolumeConfig::VolumeKeyContext() const {
  return {{"envelopefs", "volume"}, {"volume", volume_id}};
}

std::map<std::string, std::string> VolumeConfig::FileContext(const std::string& file_id_hex) const {
  return {{"envelopefs", "file"}, {"volume", volume_id}, {"file", file_id_hex}};
}

std::string VolumeConfig::Canonical() const { return ToJson(*this).dump(); }

StatusOr<std::string> VolumeConfig::Encode(const crypto::SecretBytes& volume_key) const {
  ENVELOPE_ASSIGN_OR_RETURN(crypto::SecretBytes mac_key,
                            crypto::HkdfSha256(volume_key.view(), ByteView(), kConfigMacInfo, 32));
  json j = ToJson(*this);
  j["mac"] = HexEncode(crypto::HmacSha256(mac_key.view(), AsBytes(Canonical())));
  return j.dump(2) + "\n";
}

StatusOr<VolumeConfig> VolumeConfig::Parse(std::string_view text, std::string* mac_hex) {
  json j = json::parse(text, nullptr, false);
  if (j.is_discarded() || !j.is_object()) return Status::Corruption("volume config is not JSON");
  static const std::set<std::string> kKnown = {
      "format", "version", "volume_id", "key_id", "kms_endpoint", "dek_location",
      "chunk_size", "wrapped_volume_key", "created", "mac"};
  for (const auto& [k, v] : j.items()) {
    if (!kKnown.count(k)) return Status::Corruption("volume config: unknown field \"" + k + "\"");
  }
  try {
    if (j.at("format") != "envelopefs") return Status::Corruption("not an envelopefs volume config");
    int version = j.at("version").get<int>();
    if (version != kVolumeConfigVersion) {
      return Status::Corruption("volume config: wanted version 1, found " + std::to_string(version));
    }
    VolumeConfig c;
    c.volume_id = j.at("volume_id").get<std::string>();
    c.key_id = j.at("key_id").get<std::string>();
    c.kms_endpoint = j.at("kms_endpoint").get<std::string>();
    std::string location = j.at("dek_location").get<std::string>();
    if (location != "header" && location != "xattr") {
      return Status::Corruption("volume config: dek_location must be header or xattr");
    }
    c.dek_in_xattr = location == "xattr";
    c.chunk_size = j.at("chunk_size").get<uint32_t>();
    if (!Base64Decode(j.at("wrapped_volume_key").get<std::string>(), &c.wrapped_volume_key)) {
      return Status::Corruption("volume config: wrapped_volume_key is not base64");
    }
    c.created = j.at("created").get<int64_t>();
    *mac_hex = j.at("mac").get<std::string>();
    return c;
  } catch (const json::exception& e) {
    return Status::Corruption(std::string("volume config: ") + e.what());
  }
}

Status VolumeConfig::Verify(const crypto::SecretBytes& volume_key, const std::string& mac_hex) const {
  ENVELOPE_ASSIGN_OR_RETURN(crypto::SecretBytes mac_key,
                            crypto::HkdfSha256(volume_key.view(), ByteView(), kConfigMacInfo, 32));
  std::string want = HexEncode(crypto::HmacSha256(mac_key.view(), AsBytes(Canonical())));
  if (!crypto::ConstantTimeEquals(AsBytes(want), AsBytes(mac_hex))) {
    return Status::Corruption("volume config was modified (MAC mismatch)");
  }
  return Status::Ok();
}

StatusOr<crypto::SecretBytes> DeriveNameKey(const crypto::SecretBytes& volume_key) {
  return crypto::HkdfSha256(volume_key.view(), ByteView(), kNameKeyInfo, 32);
}

StatusOr<crypto::SecretBytes> DeriveXattrKey(const crypto::SecretBytes& volume_key) {
  return crypto::HkdfSha256(volume_key.view(), ByteView(), kXattrKeyInfo, 32);
}

}  // namespace envelope::fs
