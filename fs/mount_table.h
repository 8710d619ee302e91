// Which envelopefs volumes are mounted on this machine: /proc/self/mounts,
// where a mount's source is "envelopefs:CIPHERDIR". Rotate waits for a
// mount; rekey goes through one.
#ifndef ENVELOPE_FS_MOUNT_TABLE_H_
#define ENVELOPE_FS_MOUNT_TABLE_H_

#include <string>

namespace envelope::fs {

// Whether the cipherdir (absolute, as the mount was given it) is mounted.
bool IsMounted(const std::string& cipherdir);
// Where it is mounted ("" if it is not; the first mount if several).
std::string MountPointOf(const std::string& cipherdir);

}  // namespace envelope::fs

#endif  // ENVELOPE_FS_MOUNT_TABLE_H_
