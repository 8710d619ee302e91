// The other regions (envelope-keyd daemons) this daemon replicates
// multi-Region keys to and from (docs/KEYSERVICE.md, "Multi-Region keys"):
// `--peers FILE`, one region per line,
//   REGION  https://HOST:PORT  ACCESS_KEY_ID  SECRET  [CA_FILE]
// where the access key is one the peer's access-keys file gives to a
// principal its --replication-principal names, and CA_FILE (PEM) is what to
// trust for the peer's TLS certificate (else the system store). The file
// holds secrets: mode 0600, checked. It is read at each use, so a region
// can be added without a restart.
//
// Thread safety: all methods are thread-safe (no mutable state).
#ifndef ENVELOPE_KEYSERVICE_REGION_PEERS_H_
#define ENVELOPE_KEYSERVICE_REGION_PEERS_H_

#include <memory>
#include <string>

#include "core/base/status.h"
#include "kms/kms_client.h"

namespace envelope::keyservice {

class RegionPeers {
 public:
  // `path` empty: no peers (every region is unknown).
  explicit RegionPeers(std::string path) : path_(std::move(path)) {}

  // A client for `region`, signing as its access key over https. NotFound
  // if the file does not name the region.
  StatusOr<std::unique_ptr<kms::KmsClient>> ClientFor(const std::string& region) const;

 private:
  const std::string path_;
};

}  // namespace envelope::keyservice

#endif  // ENVELOPE_KEYSERVICE_REGION_PEERS_H_
