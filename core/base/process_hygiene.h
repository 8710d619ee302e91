// Keeping key material out of core dumps and out of other processes' reach.
//
// Every process that holds key material (envelope-keyd, envelopefs,
// envelopectl, envelope-format-tool) calls HardenProcess() first thing in
// main. It makes the process non-dumpable (PR_SET_DUMPABLE = 0): no core
// file on a crash, no ptrace attach and no /proc/PID/mem, environ or fd by
// other processes of the same user (those /proc files become root's). And
// it sets the soft RLIMIT_CORE to 0, so that even with
// fs.suid_dumpable = 2 a crash writes no core. Both survive fork, so a
// daemon's background child keeps them.
//
// Non-dumpable does not stop the process from using its own /proc/self
// (same thread group), so /proc/self/fd paths keep working for a non-root
// daemon. execve makes the new program dumpable again; the core limit is
// inherited, so a caller that execs another program (secrets exec) restores
// the limit it started with first (RestoreCoreLimitForExec).
#ifndef ENVELOPE_CORE_BASE_PROCESS_HYGIENE_H_
#define ENVELOPE_CORE_BASE_PROCESS_HYGIENE_H_

#include "core/base/status.h"

namespace envelope {

// Fails only if the kernel refuses (it does not on Linux).
Status HardenProcess();

// Puts back the soft core-file limit HardenProcess found, for a program
// about to be exec'd (which is not ours and may want its cores).
Status RestoreCoreLimitForExec();

}  // namespace envelope

#endif  // ENVELOPE_CORE_BASE_PROCESS_HYGIENE_H_
