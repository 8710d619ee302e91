#include "core/base/process_hygiene.h"

#include <sys/prctl.h>
#include <sys/resource.h>

namespace envelope {

namespace {
// The soft core limit before HardenProcess lowered it; set once, in main,
// before any thread starts.
rlim_t saved_core_soft_limit = 0;
bool saved = false;
}  // namespace

Status HardenProcess() {
  if (::prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) != 0) {
    return Status::FromErrno("prctl(PR_SET_DUMPABLE, 0)");
  }
  struct rlimit core;
  if (::getrlimit(RLIMIT_CORE, &core) != 0) return Status::FromErrno("getrlimit(RLIMIT_CORE)");
  if (!saved) {
    saved_core_soft_limit = core.rlim_cur;
    saved = true;
  }
  // Only the soft limit: lowering the hard one would be irrevocable for the
  // programs secrets exec runs.
  core.rlim_cur = 0;
  if (::setrlimit(RLIMIT_CORE, &core) != 0) return Status::FromErrno("setrlimit(RLIMIT_CORE)");
  return Status::Ok();
}

Status RestoreCoreLimitForExec() {
  if (!saved) return Status::Ok();
  struct rlimit core;
  if (::getrlimit(RLIMIT_CORE, &core) != 0) return Status::FromErrno("getrlimit(RLIMIT_CORE)");
  core.rlim_cur = saved_core_soft_limit;
  if (::setrlimit(RLIMIT_CORE, &core) != 0) return Status::FromErrno("setrlimit(RLIMIT_CORE)");
  return Status::Ok();
}

}  // namespace envelope
