// The audit trail: one JSON line per request, chained with HMAC-SHA256 so
// that editing, inserting or deleting any line is detected
// (docs/KEYSERVICE.md, "Audit log").
//
//   line i := {"seq":i, ..., "prev":MAC(i-1)} with ,"mac":MAC(i) spliced in
//             before the final '}'
//   MAC(i) := HMAC-SHA256(audit key, MAC(i-1) bytes || line i without mac)
//   MAC(0) := 32 zero bytes (the line before the first)
//
// The MAC key is derived from the root key, so someone who can write the
// file but not read the root key cannot forge a consistent chain. The last
// (seq, mac, end offset) is also kept in memory and anchored in the store
// (audit_anchor.h), so deleting lines at the end is detected too.
//
// Thread safety: every method is thread-safe (one internal mutex).
#ifndef ENVELOPE_KEYSERVICE_AUDIT_LOG_H_
#define ENVELOPE_KEYSERVICE_AUDIT_LOG_H_

#include <cstdint>
#include <mutex>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "core/base/status.h"
#include "core/crypto/hash.h"
#include "core/crypto/secret_bytes.h"

namespace envelope::keyservice {

struct AuditHead {
  uint64_t seq = 0;  // of the last line; 0 for an empty log
  std::string mac_hex;  // of the last line; 64 zeros for an empty log
  // The file's size just after that line; 0 if not known (an anchor saved
  // before offsets were recorded).
  uint64_t end_offset = 0;
};

struct AuditVerifyResult {
  bool ok = true;
  uint64_t lines = 0;
  uint64_t bad_line = 0;  // 1-based line number of the first problem, 0 if ok
  std::string reason;
  // Facts an auditor should see even when the chain is intact, e.g. a loss
  // of records the operator accepted at start-up (AuditTruncationAccepted).
  std::vector<std::string> notes;
};

// The operation of the record that notes an accepted loss of records
// (envelope-keyd --audit-accept-truncation).
inline constexpr char kAuditTruncationAccepted[] = "AuditTruncationAccepted";

class AuditLog {
 public:
  // Opens (creating, 0600) the log at `path` and resumes the chain from its
  // last line. A torn last line (no newline: the daemon died mid-write) is
  // cut off and reported in *recovered.
  static StatusOr<std::unique_ptr<AuditLog>> Open(const std::string& path,
                                                  const crypto::SecretBytes& root_key,
                                                  std::string* recovered);
  // The same with the MAC key itself (DeriveMacKey of the root key the
  // store was first opened with, kept in the store since, so that the
  // chain outlives a change of root key).
  static StatusOr<std::unique_ptr<AuditLog>> OpenWithMacKey(const std::string& path,
                                                            crypto::SecretBytes mac_key,
                                                            std::string* recovered);
  ~AuditLog();
  AuditLog(const AuditLog&) = delete;
  AuditLog& operator=(const AuditLog&) = delete;

  // Appends one record. `record` holds the fields; seq, time, prev and mac
  // are added here. Fails (and the caller must fail the request) if the
  // line cannot be written in full; a partial write is cut off again.
  Status Append(nlohmann::ordered_json record);
  // Appends `records`, in order, as consecutive lines of the chain, in one
  // write: all of them or (a partial write is cut off again) none.
  Status AppendAll(std::vector<nlohmann::ordered_json> records);
  // The same for records already serialised: each the members of one
  // record as JSON text without its braces, followed by a comma (none
  // named seq, time, prev or mac), so that a part many records share is
  // serialised once.
  Status AppendFields(std::vector<std::string> fields);

  // The last line written (with the file size after it).
  AuditHead head() const;

  // Forces every line written so far to the disk (fdatasync) and returns
  // the head that is now durable: the only head worth anchoring, since an
  // anchor ahead of the durable log would make a power loss look like
  // tampering.
  StatusOr<AuditHead> Sync();

  // Whether the log continues from `anchor` (a head saved earlier): the
  // anchored line is still there with its MAC, and every line after it
  // chains to it. Reads only the lines after the anchor (the whole file for
  // an anchor without an offset).
  AuditVerifyResult ContinuesFrom(const AuditHead& anchor) const;

  // The last `n` lines, oldest first.
  std::vector<std::string> Tail(size_t n) const;

  // Verifies the whole file against the chain and against each of
  // `checkpoints` (heads this process or the store saw: the line with that
  // seq must be there with that MAC; seq 0 is skipped).
  AuditVerifyResult Verify(const std::vector<AuditHead>& checkpoints) const;

  // Verification over an arbitrary file with a given key (for tests).
  static AuditVerifyResult VerifyFile(const std::string& path,
                                      const crypto::SecretBytes& mac_key,
                                      const std::vector<AuditHead>& checkpoints);
  static AuditVerifyResult VerifyFile(const std::string& path,
                                      const crypto::SecretBytes& mac_key,
                                      const AuditHead& expected_head) {
    return VerifyFile(path, mac_key, std::vector<AuditHead>{expected_head});
  }
  // The MAC key for a root key.
  static StatusOr<crypto::SecretBytes> DeriveMacKey(const crypto::SecretBytes& root_key);

 private:
  AuditLog(std::string path, int fd, crypto::SecretBytes mac_key)
      : path_(std::move(path)), fd_(fd), mac_key_(std::move(mac_key)) {}

  const std::string path_;
  const int fd_;
  const crypto::SecretBytes mac_key_;
  mutable std::mutex mu_;
  AuditHead head_;      // guarded by mu_
  uint64_t size_ = 0;   // guarded by mu_: file size after the last good line
};

}  // namespace envelope::keyservice

#endif  // ENVELOPE_KEYSERVICE_AUDIT_LOG_H_
