#include "keyservice/region_peers.h"

#include "keyservice/access_keys.h"
#include "kms/endpoint.h"

namespace envelope::keyservice {

StatusOr<std::unique_ptr<kms::KmsClient>> RegionPeers::ClientFor(const std::string& region) const {
  if (path_.empty()) {
    return Status::NotFound("no other region is configured (envelope-keyd --peers FILE)");
  }
  std::optional<kms::KmsClient::Options> found;
  auto text = [](ByteView b) { return std::string(b.begin(), b.end()); };
  ENVELOPE_RETURN_IF_ERROR(ForEachSecretLine(
      path_, "peers file", [&](size_t line_no, const std::vector<ByteView>& f) -> Status {
        if (f.size() != 4 && f.size() != 5) {
          return Status::InvalidArgument(path_ + " line " + std::to_string(line_no) +
                                         ": expected REGION URL ACCESS_KEY_ID SECRET [CA_FILE]");
        }
        if (text(f[0]) != region || found) return Status::Ok();
        kms::KmsClient::Options o;
        ENVELOPE_ASSIGN_OR_RETURN(o.endpoint, kms::ParseEndpoint(text(f[1])));
        if (o.endpoint.kind != kms::Endpoint::kHttps) {
          return Status::InvalidArgument(path_ + " line " + std::to_string(line_no) +
                                         ": another region is reached over https only");
        }
        kms::Credentials creds;
        creds.access_key_id = text(f[2]);
        ENVELOPE_ASSIGN_OR_RETURN(creds.secret_access_key, crypto::SecretBytes::CopyOf(f[3]));
        o.credentials = std::move(creds);
        o.region = region;
        if (f.size() == 5) o.ca_file = text(f[4]);
        found = std::move(o);
        return Status::Ok();
      }));
  if (!found) return Status::NotFound("region " + region + " is not in " + path_);
  return kms::KmsClient::New(std::move(*found));
}

}  // namespace envelope::keyservice
