// The one place a KeyService is built from what the user gave: an endpoint
// (flag, $ENVELOPE_KMS_ENDPOINT, the AWS variables, or the default socket),
// which API dialect to speak, and the credentials, region and TLS settings
// for it.
//
// Thread safety: ConnectKeyService reads the environment (getenv) and the
// AWS config files; it must not race with setenv.
#ifndef ENVELOPE_KMS_CONNECT_H_
#define ENVELOPE_KMS_CONNECT_H_

#include <chrono>
#include <memory>
#include <string>
#include <string_view>

#include "core/base/status.h"
#include "kms/key_service.h"

namespace envelope::kms {

// Which API to speak.
//   kEnvelope  envelope-keyd's: the AWS operations plus its extensions
//              (batched data keys, version numbers, public blob labels)
//   kStandard  only operations and fields in AWS's published KMS API;
//              blobs are opaque (AWS KMS, or any KMS-compatible service)
//   kAuto      kStandard for an AWS endpoint (aws:REGION, *.amazonaws.com),
//              else kEnvelope
enum class KmsApi { kAuto, kEnvelope, kStandard };

// "auto", "envelope", "standard"; InvalidArgument otherwise.
StatusOr<KmsApi> ParseKmsApi(std::string_view text);

struct ConnectOptions {
  std::string endpoint;      // as given by a flag; "" = the usual resolution
  KmsApi api = KmsApi::kAuto;
  std::string ca_file;       // https: trust this PEM bundle instead of the system store
  // A mount must notice a dead key service quickly and say so (opens of
  // files whose DEK is cached keep working meanwhile); a tool can wait.
  bool fail_fast = false;
};

StatusOr<std::unique_ptr<KeyService>> ConnectKeyService(const ConnectOptions& options);

// The same service as its wire-level class, for tools that are also thin
// front ends to the KMS API itself (envelopectl key ...: StandardKms::client()).
class StandardKms;
StatusOr<std::unique_ptr<StandardKms>> ConnectKms(const ConnectOptions& options);

}  // namespace envelope::kms

#endif  // ENVELOPE_KMS_CONNECT_H_
