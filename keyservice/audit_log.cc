#include "keyservice/audit_log.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <ctime>
#include <fstream>

#include "core/base/fd_io.h"
#include "keyservice/json_output.h"

namespace envelope::keyservice {

namespace {

constexpr std::string_view kMacInfo = "envelope-keyd/v1/audit-mac";
const std::string kZeroMac(64, '0');
constexpr std::string_view kMacField = ",\"mac\":\"";
constexpr uint64_t kTailReadInBytes = 1 << 20;

std::string NowIso8601() {
  auto now = std::chrono::system_clock::now();
  auto secs = std::chrono::system_clock::to_time_t(now);
  auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(now.time_since_epoch()).count() % 1000;
  std::tm tm;
  gmtime_r(&secs, &tm);
  char buf[64];
  std::snprintf(buf, sizeof(buf), "%04d-%02d-%02dT%02d:%02d:%02d.%03lldZ", tm.tm_year + 1900,
                tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
                static_cast<long long>(ms));
  return buf;
}

std::string ComputeMac(const crypto::SecretBytes& key, const std::string& prev_hex,
                       std::string_view body) {
  Bytes prev;
  HexDecode(prev_hex, &prev);
  Bytes input(prev.begin(), prev.end());
  input.insert(input.end(), body.begin(), body.end());
  return HexEncode(crypto::HmacSha256(key.view(), input));
}

// Splits a line into (body without mac, mac hex). False if malformed.
bool SplitLine(std::string_view line, std::string* body, std::string* mac) {
  size_t pos = line.rfind(kMacField);
  if (pos == std::string_view::npos) return false;
  size_t start = pos + kMacField.size();
  if (line.size() != start + 64 + 2 || line.substr(start + 64) != "\"}") return false;
  *mac = std::string(line.substr(start, 64));
  *body = std::string(line.substr(0, pos)) + "}";
  return true;
}

// Checks the lines of `in` from its current position: the first must have
// seq `first_seq` and chain to `prev`. Fills r->lines with the last good
// seq; on a problem sets r->ok = false, r->bad_line to the seq where it is
// and stops. Every checkpoint whose seq is passed must carry its MAC.
void VerifyLines(std::istream& in, const crypto::SecretBytes& key, uint64_t first_seq,
                 std::string prev, const std::vector<AuditHead>& checkpoints,
                 AuditVerifyResult* r) {
  std::string line;
  uint64_t expected_seq = first_seq;
  r->lines = first_seq - 1;
  auto fail = [&](const std::string& why) {
    r->ok = false;
    r->bad_line = expected_seq;
    r->reason = why;
  };
  while (std::getline(in, line)) {
    std::string body, mac;
    if (!SplitLine(line, &body, &mac)) return fail("line is not a sealed audit record");
    auto doc = nlohmann::json::parse(body, nullptr, false);
    if (doc.is_discarded() || !doc.is_object()) return fail("line is not JSON");
    if (!doc.contains("seq") || !doc["seq"].is_number_unsigned() ||
        doc["seq"].get<uint64_t>() != expected_seq) {
      return fail("sequence number is not " + std::to_string(expected_seq) +
                  " (a line was deleted, inserted or reordered)");
    }
    if (!doc.contains("prev") || doc["prev"] != prev) {
      return fail("does not chain to the line before it");
    }
    if (!crypto::ConstantTimeEquals(AsBytes(ComputeMac(key, prev, body)), AsBytes(mac))) {
      return fail("MAC mismatch (the line was edited)");
    }
    for (const AuditHead& c : checkpoints) {
      if (c.seq == expected_seq && c.mac_hex != mac) {
        return fail("line differs from the one the service wrote and anchored");
      }
    }
    if (doc.value("operation", "") == kAuditTruncationAccepted) {
      r->notes.push_back("line " + std::to_string(expected_seq) + ": records " +
                         std::to_string(doc.value("log_seq", uint64_t{0}) + 1) + " to " +
                         std::to_string(doc.value("anchored_seq", uint64_t{0})) +
                         " were lost and the loss was accepted at start-up "
                         "(--audit-accept-truncation)");
    }
    prev = mac;
    r->lines = expected_seq;
    ++expected_seq;
  }
  for (const AuditHead& c : checkpoints) {
    if (c.seq > r->lines) {
      r->ok = false;
      r->bad_line = r->lines + 1;
      r->reason = "log ends at line " + std::to_string(r->lines) + " but line " +
                  std::to_string(c.seq) + " was written (lines deleted at the end)";
      return;
    }
  }
}

}  // namespace

StatusOr<crypto::SecretBytes> AuditLog::DeriveMacKey(const crypto::SecretBytes& root_key) {
  return crypto::HkdfSha256(root_key.view(), ByteView(), kMacInfo, 32);
}

AuditLog::~AuditLog() { ::close(fd_); }

StatusOr<std::unique_ptr<AuditLog>> AuditLog::Open(const std::string& path,
                                                   const crypto::SecretBytes& root_key,
                                                   std::string* recovered) {
  ENVELOPE_ASSIGN_OR_RETURN(crypto::SecretBytes key, DeriveMacKey(root_key));
  return OpenWithMacKey(path, std::move(key), recovered);
}

StatusOr<std::unique_ptr<AuditLog>> AuditLog::OpenWithMacKey(const std::string& path,
                                                             crypto::SecretBytes key,
                                                             std::string* recovered) {
  int fd = ::open(path.c_str(), O_RDWR | O_APPEND | O_CREAT | O_CLOEXEC, 0600);
  if (fd < 0) return Status::FromErrno("open " + path);
  std::unique_ptr<AuditLog> log(new AuditLog(path, fd, std::move(key)));

  // Resume from the last complete line; only the file's tail is read, so
  // start-up does not grow with the size of the log.
  struct stat st;
  if (::fstat(fd, &st) != 0) return Status::FromErrno("fstat " + path);
  const uint64_t file_size = static_cast<uint64_t>(st.st_size);
  const uint64_t tail_from = file_size > kTailReadInBytes ? file_size - kTailReadInBytes : 0;
  std::string content(file_size - tail_from, '\0');
  ENVELOPE_ASSIGN_OR_RETURN(
      size_t got, PreadFull(fd, MutableByteView(reinterpret_cast<uint8_t*>(content.data()),
                                                content.size()), tail_from));
  content.resize(got);
  size_t good_end = content.rfind('\n');
  good_end = good_end == std::string::npos ? 0 : good_end + 1;
  if (good_end == 0 && tail_from > 0) {
    return Status::Corruption("the audit log's last line is longer than 1 MiB");
  }
  if (good_end != content.size()) {
    if (recovered) {
      *recovered = "cut a torn last line of " + std::to_string(content.size() - good_end) +
                   " bytes from the audit log";
    }
    if (::ftruncate(fd, static_cast<off_t>(tail_from + good_end)) != 0) {
      return Status::FromErrno("ftruncate");
    }
  }
  log->size_ = tail_from + good_end;
  log->head_ = AuditHead{0, kZeroMac};
  if (good_end > 0) {
    size_t start = content.rfind('\n', good_end - 2);
    start = start == std::string::npos ? 0 : start + 1;
    std::string line = content.substr(start, good_end - 1 - start);
    std::string body, mac;
    if (!SplitLine(line, &body, &mac)) {
      return Status::Corruption("the last audit line is malformed; run envelopectl audit verify");
    }
    auto doc = nlohmann::json::parse(body, nullptr, false);
    if (doc.is_discarded() || !doc.contains("seq") || !doc["seq"].is_number_unsigned()) {
      return Status::Corruption("the last audit line has no sequence number");
    }
    log->head_ = AuditHead{doc["seq"].get<uint64_t>(), mac, log->size_};
  }
  return log;
}

Status AuditLog::Append(nlohmann::ordered_json record) {
  std::vector<nlohmann::ordered_json> one;
  one.push_back(std::move(record));
  return AppendAll(std::move(one));
}

Status AuditLog::AppendAll(std::vector<nlohmann::ordered_json> records) {
  // The records' own fields are serialised before the lock is taken: with
  // many connections, every request's audit record waits for this lock, so
  // only what the chain needs (seq, time, prev, MAC, write) is done under
  // it. Each line is byte for byte what DumpJson of {"seq", "time", the
  // record's fields, "prev"} gives.
  std::vector<std::string> fields;
  fields.reserve(records.size());
  for (nlohmann::ordered_json& record : records) {
    record.erase("seq");
    record.erase("time");
    record.erase("prev");
    record.erase("mac");
    std::string f = DumpJson(record);  // "{...}"
    fields.push_back(f.size() > 2 ? f.substr(1, f.size() - 2) + "," : std::string());
  }
  return AppendFields(std::move(fields));
}

Status AuditLog::AppendFields(std::vector<std::string> fields) {
  std::lock_guard lock(mu_);
  std::string text;
  AuditHead head = head_;
  const std::string now = NowIso8601();
  for (const std::string& f : fields) {
    std::string body = "{\"seq\":" + std::to_string(head.seq + 1) + ",\"time\":\"" + now + "\"," +
                       f + "\"prev\":\"" + head.mac_hex + "\"}";
    std::string mac = ComputeMac(mac_key_, head.mac_hex, body);
    text.append(body, 0, body.size() - 1);
    text += kMacField;
    text += mac;
    text += "\"}\n";
    head.seq += 1;
    head.mac_hex = std::move(mac);
  }
  ssize_t n = ::write(fd_, text.data(), text.size());
  if (n != static_cast<ssize_t>(text.size())) {
    Status s = n < 0 ? Status::FromErrno("write audit log")
                     : Status::IoError("short write to the audit log", EIO);
    // Cut off any partial line so the chain stays intact for the next try.
    (void)::ftruncate(fd_, static_cast<off_t>(size_));
    return s;
  }
  size_ += text.size();
  head.end_offset = size_;
  head_ = std::move(head);
  return Status::Ok();
}

AuditHead AuditLog::head() const {
  std::lock_guard lock(mu_);
  return head_;
}

StatusOr<AuditHead> AuditLog::Sync() {
  std::lock_guard lock(mu_);
  if (::fdatasync(fd_) != 0) return Status::FromErrno("fdatasync audit log");
  return head_;
}

AuditVerifyResult AuditLog::ContinuesFrom(const AuditHead& anchor) const {
  std::lock_guard lock(mu_);
  AuditVerifyResult r;
  r.lines = head_.seq;
  if (anchor.seq == 0) return r;
  if (head_.seq < anchor.seq) {
    r.ok = false;
    r.bad_line = head_.seq + 1;
    r.reason = "the log ends at record " + std::to_string(head_.seq) + " but record " +
               std::to_string(anchor.seq) + " was written and anchored (" +
               std::to_string(anchor.seq - head_.seq) + " records were cut from its end)";
    return r;
  }
  if (anchor.end_offset == 0) return VerifyFile(path_, mac_key_, {anchor});  // older anchor
  std::ifstream in(path_, std::ios::binary);
  if (!in) {
    r.ok = false;
    r.reason = "cannot open " + path_;
    return r;
  }
  // The anchored line is the one that ends at anchor.end_offset.
  const uint64_t window = std::min<uint64_t>(anchor.end_offset, kTailReadInBytes);
  std::string tail(window, '\0');
  auto got = PreadFull(fd_, MutableByteView(reinterpret_cast<uint8_t*>(tail.data()), tail.size()),
                       anchor.end_offset - window);
  std::string body, mac;
  bool found = false;
  if (anchor.end_offset <= size_ && got.ok() && *got == window && !tail.empty() &&
      tail.back() == '\n') {
    size_t start = tail.size() >= 2 ? tail.rfind('\n', tail.size() - 2) : std::string::npos;
    start = start == std::string::npos ? 0 : start + 1;
    if (SplitLine(std::string_view(tail).substr(start, tail.size() - 1 - start), &body, &mac)) {
      auto doc = nlohmann::json::parse(body, nullptr, false);
      found = !doc.is_discarded() && doc.is_object() && doc.contains("seq") &&
              doc["seq"].is_number_unsigned() && doc["seq"].get<uint64_t>() == anchor.seq &&
              mac == anchor.mac_hex;
    }
  }
  if (!found) {
    r.ok = false;
    r.bad_line = anchor.seq;
    r.reason = "record " + std::to_string(anchor.seq) +
               " is not the one the service wrote and anchored (the log was cut or rewritten)";
    return r;
  }
  in.seekg(static_cast<std::streamoff>(anchor.end_offset));
  VerifyLines(in, mac_key_, anchor.seq + 1, anchor.mac_hex, {head_}, &r);
  return r;
}

std::vector<std::string> AuditLog::Tail(size_t n) const {
  std::lock_guard lock(mu_);
  const uint64_t from = size_ > kTailReadInBytes ? size_ - kTailReadInBytes : 0;
  std::string content(size_ - from, '\0');
  auto got = PreadFull(fd_, MutableByteView(reinterpret_cast<uint8_t*>(content.data()),
                                            content.size()), from);
  std::vector<std::string> lines;
  if (!got.ok()) return lines;
  content.resize(*got);
  size_t end = content.size();
  while (lines.size() < n && end > 0) {
    size_t start = content.rfind('\n', end - 2);
    start = (start == std::string::npos || end < 2) ? 0 : start + 1;
    if (start == 0 && from > 0) break;  // a partial line at the window's edge
    lines.push_back(content.substr(start, end - 1 - start));
    end = start;
  }
  return std::vector<std::string>(lines.rbegin(), lines.rend());
}

AuditVerifyResult AuditLog::Verify(const std::vector<AuditHead>& checkpoints) const {
  std::lock_guard lock(mu_);  // no appends while we read
  return VerifyFile(path_, mac_key_, checkpoints);
}

AuditVerifyResult AuditLog::VerifyFile(const std::string& path, const crypto::SecretBytes& key,
                                       const std::vector<AuditHead>& checkpoints) {
  AuditVerifyResult r;
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    r.ok = false;
    r.reason = "cannot open " + path;
    return r;
  }
  VerifyLines(in, key, 1, kZeroMac, checkpoints, &r);
  return r;
}

}  // namespace envelope::keyservice
