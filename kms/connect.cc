#include "kms/connect.h"

#include "kms/aws_config.h"
#include "kms/endpoint.h"
#include "kms/keyd_key_service.h"
#include "kms/kms_client.h"
#include "kms/standard_kms_service.h"

namespace envelope::kms {

StatusOr<KmsApi> ParseKmsApi(std::string_view text) {
  if (text == "auto" || text.empty()) return KmsApi::kAuto;
  if (text == "envelope") return KmsApi::kEnvelope;
  if (text == "standard") return KmsApi::kStandard;
  return Status::InvalidArgument("unknown KMS API '" + std::string(text) +
                                 "': expected auto, envelope or standard");
}

StatusOr<std::unique_ptr<KeyService>> ConnectKeyService(const ConnectOptions& options) {
  ENVELOPE_ASSIGN_OR_RETURN(std::unique_ptr<StandardKms> kms, ConnectKms(options));
  return std::unique_ptr<KeyService>(std::move(kms));
}

StatusOr<std::unique_ptr<StandardKms>> ConnectKms(const ConnectOptions& options) {
  ENVELOPE_ASSIGN_OR_RETURN(Endpoint endpoint, ResolveEndpoint(options.endpoint));
  KmsClient::Options client;
  client.endpoint = endpoint;
  client.ca_file = options.ca_file;
  // Credentials only matter over http(s); over the Unix socket the service
  // knows the caller by uid, and a half-set AWS environment is no error.
  // Found as the AWS CLI finds them (kms/aws_config.h), never on argv.
  if (endpoint.kind != Endpoint::kUnix) {
    ENVELOPE_ASSIGN_OR_RETURN(client.credentials, ResolveAwsCredentials());
    ENVELOPE_ASSIGN_OR_RETURN(client.region, AwsSigningRegion(endpoint));
  }
  if (options.fail_fast) {
    client.connect_timeout = std::chrono::milliseconds(1000);
    client.request_timeout = std::chrono::milliseconds(5000);
    client.max_retries = 2;
  }
  ENVELOPE_ASSIGN_OR_RETURN(std::unique_ptr<KmsClient> wire, KmsClient::New(std::move(client)));
  KmsApi api = options.api;
  if (api == KmsApi::kAuto) api = IsAwsEndpoint(endpoint) ? KmsApi::kStandard : KmsApi::kEnvelope;
  if (api == KmsApi::kStandard) return std::make_unique<StandardKms>(std::move(wire));
  return std::unique_ptr<StandardKms>(std::make_unique<KeydKeyService>(std::move(wire)));
}

}  // namespace envelope::kms
