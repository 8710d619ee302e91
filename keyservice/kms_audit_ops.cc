// The audit extensions: VerifyAudit and TailAudit (root or the daemon's
// own user).
#include "keyservice/audit_anchor.h"
#include "keyservice/kms_call.h"

namespace envelope::keyservice {

using json = nlohmann::json;

bool KmsService::IsAdmin(const Call& c) const {
  return c.who.kind == Principal::Kind::kUnix && (c.who.uid == 0 || c.who.uid == options_.admin_uid);
}

KmsService::Outcome KmsService::VerifyAudit(Call& c) {
  if (!IsAdmin(c)) {
    return Error{"AccessDeniedException", "only root may verify the audit log"};
  }
  // Against the head this process wrote and the anchor saved in the store:
  // lines cut off the end while the daemon was stopped are missed by the
  // first but not by the second.
  std::vector<AuditHead> checkpoints{audit_->head()};
  auto anchor = LoadAuditAnchor(store_);
  if (!anchor.ok()) {
    return json{{"Ok", false}, {"Lines", 0}, {"BadLine", 0},
                {"Reason", "the saved audit anchor cannot be read: " + anchor.status().message()}};
  }
  if (*anchor) checkpoints.push_back(**anchor);
  AuditVerifyResult r = audit_->Verify(checkpoints);
  return json{{"Ok", r.ok}, {"Lines", r.lines}, {"BadLine", r.bad_line}, {"Reason", r.reason},
              {"Notes", r.notes}};
}

KmsService::Outcome KmsService::TailAudit(Call& c) {
  if (!IsAdmin(c)) {
    return Error{"AccessDeniedException", "only root may read the audit log"};
  }
  int64_t lines = 20;
  KMS_TRY(c.req.Int("Lines", false, &lines));
  if (lines < 1 || lines > 10000) {
    return Error{"ValidationException", "Lines must be between 1 and 10000"};
  }
  return json{{"Records", audit_->Tail(static_cast<size_t>(lines))}};
}

}  // namespace envelope::keyservice
