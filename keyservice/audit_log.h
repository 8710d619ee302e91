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
// (seq, mac) is also kept in memory and anchored in the store, so deleting
// lines at the end is detected too.
//
// Thread safety: Append and Verify are thread-safe (one internal mutex).
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
};

struct AuditVerifyResult {
  bool ok = true;
  uint64_t lines = 0;
  uint64_t bad_line = 0;  // 1-based line number of the first problem, 0 if ok
  std::string reason;
};

class AuditLog {
 public:
  // Opens (creating, 0600) the log at `path` and resumes the chain from its
  // last line. A torn last line (no newline: the daemon died mid-write) is
  // cut off and reported in *recovered.
  static StatusOr<std::unique_ptr<AuditLog>> Open(const std::string& path,
                                                  const crypto::SecretBytes& root_key,
                                                  std::string* recovered);
  ~AuditLog();
  AuditLog(const AuditLog&) = delete;
  AuditLog& operator=(const AuditLog&) = delete;

  // Appends one record. `record` holds the fields; seq, time, prev and mac
  // are added here. Fails (and the caller must fail the request) if the
  // line cannot be written in full; a partial write is cut off again.
  Status Append(nlohmann::ordered_json record);

  AuditHead head() const;

  // The last `n` lines, oldest first.
  std::vector<std::string> Tail(size_t n) const;

  // Verifies the file against the chain and against `expected_head` (the
  // head this process or the store last saw; seq 0 skips that check).
  AuditVerifyResult Verify(const AuditHead& expected_head) const;

  // Verification over an arbitrary file with a given key (for tests).
  static AuditVerifyResult VerifyFile(const std::string& path,
                                      const crypto::SecretBytes& mac_key,
                                      const AuditHead& expected_head);
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
