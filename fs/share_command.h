// The commands `envelopefs share`, `unshare` and `cat` (docs/SHARING.md):
// argument handling and output around fs/share.h and kms/grant_client.h.
#ifndef ENVELOPE_FS_SHARE_COMMAND_H_
#define ENVELOPE_FS_SHARE_COMMAND_H_

#include <string>

#include "fs/volume.h"

namespace envelope::fs {

struct ShareFlags {
  std::string path;   // in the volume: /docs/a.txt
  std::string with;   // the grantee principal
  std::string until;  // "", +30m, +12h, +7d, epoch seconds, 2026-12-31[THH:MM:SSZ]
};

// Exit codes: 0 done, 1 failed (the reason on stderr).
int ShareCommand(const std::string& cipherdir, const OpenOptions& open, const ShareFlags& flags);
int UnshareCommand(const std::string& cipherdir, const OpenOptions& open, const ShareFlags& flags);
// `key`: the pin the sharer printed (required). open.endpoint, kms_api and
// ca_file choose the key service.
int CatCommand(const std::string& backing_file, const std::string& key, const OpenOptions& open);

// The --until forms above, as epoch seconds after `now`; InvalidArgument
// otherwise, or for a time not after `now`.
StatusOr<int64_t> ParseUntil(const std::string& text, int64_t now);

}  // namespace envelope::fs

#endif  // ENVELOPE_FS_SHARE_COMMAND_H_
