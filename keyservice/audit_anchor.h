// The audit anchor: the head (seq, MAC, end offset) of the audit log that
// the service last made durable, kept in the store's meta database as
// "audit-head". It is what makes cutting lines off the end of the log
// detectable, so it only ever moves forward (docs/KEYSERVICE.md, "Audit
// log"):
//
//   * saved only after the log is fdatasync'ed up to that head, so a power
//     loss cannot leave the anchor ahead of the durable log;
//   * saved only if the new head extends the saved one (same line, or a
//     later one in the same chain);
//   * checked at start-up: a log that does not continue from the anchor
//     keeps the daemon from starting, unless the operator accepts the loss
//     explicitly, which is recorded in the log itself.
//
// Each save is one LMDB transaction, so the anchor is replaced atomically.
#ifndef ENVELOPE_KEYSERVICE_AUDIT_ANCHOR_H_
#define ENVELOPE_KEYSERVICE_AUDIT_ANCHOR_H_

#include <optional>
#include <string>

#include "core/base/status.h"
#include "keyservice/audit_log.h"
#include "keyservice/key_store.h"

namespace envelope::keyservice {

// "SEQ MAC END_OFFSET" (older anchors: "SEQ MAC").
std::string FormatAuditAnchor(const AuditHead& head);
std::optional<AuditHead> ParseAuditAnchor(const std::string& text);

// The saved anchor, or nullopt if none was saved yet. Corruption, naming
// the stored value and the expected form (never its bytes), if it does not
// parse: CheckAuditAnchorAtStart then keeps the daemon from starting, even
// with accept_truncation, since nothing says how much of the log is missing.
StatusOr<std::optional<AuditHead>> LoadAuditAnchor(KeyStore* store);

// Makes the log durable and anchors its head. FailedPrecondition, and
// nothing saved, if that head does not extend the saved anchor.
Status SaveAuditAnchor(KeyStore* store, AuditLog* log);

// Start-up: checks that the log continues from the saved anchor. If it does
// not, FailedPrecondition naming what is missing, unless
// `accept_truncation`: then a kAuditTruncationAccepted record describing the
// loss is appended, the log is re-anchored at its new head, and
// *accepted describes what was accepted (for the daemon's log).
Status CheckAuditAnchorAtStart(KeyStore* store, AuditLog* log, bool accept_truncation,
                               std::string* accepted);

}  // namespace envelope::keyservice

#endif  // ENVELOPE_KEYSERVICE_AUDIT_ANCHOR_H_
