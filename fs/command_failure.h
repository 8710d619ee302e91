// How the envelopefs commands end on an error: "envelopefs: REASON" on
// stderr, exit code 1. One place for fs/main.cc and the commands kept
// beside it (fs/share_command.cc).
#ifndef ENVELOPE_FS_COMMAND_FAILURE_H_
#define ENVELOPE_FS_COMMAND_FAILURE_H_

#include <cstdio>

#include "core/base/status.h"

namespace envelope::fs {

inline int Fail(const Status& s) {
  std::fprintf(stderr, "envelopefs: %s\n", s.ToString().c_str());
  return 1;
}

}  // namespace envelope::fs

#endif  // ENVELOPE_FS_COMMAND_FAILURE_H_
