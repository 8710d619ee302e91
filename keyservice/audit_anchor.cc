#include "keyservice/audit_anchor.h"

#include <charconv>
#include <sstream>

namespace envelope::keyservice {

namespace {

constexpr char kAnchorMeta[] = "audit-head";

bool ParseU64(const std::string& s, uint64_t* out) {
  auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), *out);
  return ec == std::errc() && end == s.data() + s.size() && !s.empty();
}

bool IsMacHex(const std::string& s) {
  return s.size() == 64 && s.find_first_not_of("0123456789abcdef") == std::string::npos;
}

Status WriteAnchor(KeyStore* store, const AuditHead& head) {
  return store->PutMeta(kAnchorMeta, FormatAuditAnchor(head));
}

}  // namespace

std::string FormatAuditAnchor(const AuditHead& head) {
  return std::to_string(head.seq) + " " + head.mac_hex + " " + std::to_string(head.end_offset);
}

std::optional<AuditHead> ParseAuditAnchor(const std::string& text) {
  std::istringstream in(text);
  std::string seq, mac, offset, extra;
  in >> seq >> mac >> offset >> extra;
  AuditHead head;
  head.mac_hex = mac;
  if (!ParseU64(seq, &head.seq) || !IsMacHex(mac) || !extra.empty()) return std::nullopt;
  if (!offset.empty() && !ParseU64(offset, &head.end_offset)) return std::nullopt;
  return head;
}

StatusOr<std::optional<AuditHead>> LoadAuditAnchor(KeyStore* store) {
  ENVELOPE_ASSIGN_OR_RETURN(std::optional<std::string> text, store->GetMeta(kAnchorMeta));
  if (!text) return std::optional<AuditHead>();
  auto head = ParseAuditAnchor(*text);
  if (!head) {
    // Never guessed around: an anchor that cannot be read cannot show that
    // the log was not cut, so the daemon does not start on it.
    return Status::Corruption(
        "the audit anchor saved in the store (meta \"" + std::string(kAnchorMeta) +
        "\") is malformed: expected \"SEQ MAC END_OFFSET\" in decimal and lowercase hex, "
        "found " + std::to_string(text->size()) +
        " bytes that are not. The store may be corrupted or tampered with; refusing to "
        "trust the audit log");
  }
  return head;
}

Status SaveAuditAnchor(KeyStore* store, AuditLog* log) {
  ENVELOPE_ASSIGN_OR_RETURN(std::optional<AuditHead> saved, LoadAuditAnchor(store));
  ENVELOPE_ASSIGN_OR_RETURN(AuditHead head, log->Sync());
  if (saved) {
    // The running log was checked at start to continue from the saved
    // anchor and is only appended to, so its head extends it; anything else
    // is a bug or tampering, and the anchor stays where it is.
    const bool extends = head.seq > saved->seq ||
                         (head.seq == saved->seq && head.mac_hex == saved->mac_hex);
    if (!extends) {
      return Status::FailedPrecondition(
          "refusing to move the audit anchor backwards from record " +
          std::to_string(saved->seq) + " to record " + std::to_string(head.seq));
    }
    if (head.seq == saved->seq && head.end_offset == saved->end_offset) return Status::Ok();
  }
  return WriteAnchor(store, head);
}

Status CheckAuditAnchorAtStart(KeyStore* store, AuditLog* log, bool accept_truncation,
                               std::string* accepted) {
  ENVELOPE_ASSIGN_OR_RETURN(std::optional<AuditHead> saved, LoadAuditAnchor(store));
  if (!saved) return Status::Ok();
  AuditVerifyResult r = log->ContinuesFrom(*saved);
  if (r.ok) return Status::Ok();
  std::string problem = "the audit log does not continue from its saved anchor (record " +
                        std::to_string(saved->seq) + "): " + r.reason;
  if (!accept_truncation) {
    return Status::FailedPrecondition(
        problem + ". Refusing to start: keep the log for investigation; to accept the loss "
        "(recorded in the log) start once with --audit-accept-truncation");
  }
  const AuditHead found = log->head();
  nlohmann::ordered_json record;
  record["principal"] = {{"type", "service"}, {"name", "envelope-keyd"}};
  record["operation"] = kAuditTruncationAccepted;
  record["anchored_seq"] = saved->seq;
  record["anchored_mac"] = saved->mac_hex;
  record["log_seq"] = found.seq;
  record["reason"] = r.reason;
  record["result"] = "ok";
  ENVELOPE_RETURN_IF_ERROR(log->Append(std::move(record)));
  ENVELOPE_ASSIGN_OR_RETURN(AuditHead head, log->Sync());
  // The one deliberate backward move: by the operator, and on the record.
  ENVELOPE_RETURN_IF_ERROR(WriteAnchor(store, head));
  *accepted = problem + "; accepted (--audit-accept-truncation), recorded as line " +
              std::to_string(head.seq);
  return Status::Ok();
}

}  // namespace envelope::keyservice
