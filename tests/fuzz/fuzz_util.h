// Shared pieces of the libFuzzer targets (docs/FUZZING.md): the fixed test
// keys the targets and the seed generator agree on, a check that turns a
// broken invariant into a crash libFuzzer reports, and an in-memory file.
#ifndef ENVELOPE_TESTS_FUZZ_FUZZ_UTIL_H_
#define ENVELOPE_TESTS_FUZZ_FUZZ_UTIL_H_

#include <openssl/rand.h>
#include <sys/mman.h>
#include <unistd.h>

#include <array>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string_view>

#include "core/base/coding.h"
#include "core/base/fd_io.h"
#include "core/crypto/secret_bytes.h"

namespace envelope::fuzz {

// An invariant the code under test promises; a violation is a finding.
#define FUZZ_CHECK(cond)                                                  \
  do {                                                                    \
    if (!(cond)) {                                                        \
      std::fprintf(stderr, "%s:%d: FUZZ_CHECK failed: %s\n", __FILE__,    \
                   __LINE__, #cond);                                      \
      std::abort();                                                       \
    }                                                                     \
  } while (0)

// Test keys, public on purpose: seeds sealed under them reach past the
// authentication checks of the targets.
inline constexpr std::array<uint8_t, 32> FixedKey(uint8_t fill) {
  std::array<uint8_t, 32> k{};
  for (size_t i = 0; i < k.size(); ++i) k[i] = static_cast<uint8_t>(fill + i);
  return k;
}
inline constexpr std::array<uint8_t, 32> kDek = FixedKey(0x10);
inline constexpr std::array<uint8_t, 32> kBlobMaterial = FixedKey(0x40);
inline constexpr std::array<uint8_t, 32> kNameKey = FixedKey(0x70);
inline constexpr std::array<uint8_t, 16> kFileId = {
    0xf1, 0x1e, 0x1d, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12};
inline constexpr std::array<uint8_t, 16> kDirId = {
    0xd1, 0x4e, 0xc7, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12};
inline constexpr std::array<uint8_t, 16> kBlobKeyId = {
    0x1b, 0x4e, 0x28, 0xba, 0x2f, 0xa1, 0x11, 0xd2,
    0x88, 0x3f, 0x00, 0x16, 0xd3, 0xcc, 0xa4, 0x27};
inline constexpr uint32_t kBlobKeyVersion = 3;
inline constexpr std::string_view kAccessKeyId = "AKIDFUZZEXAMPLE";
inline constexpr std::string_view kSecretAccessKey = "fuzz/secret/access/key";
// The time every SigV4 seed is signed at (X-Amz-Date 20260101T000000Z);
// the target verifies at this instant.
inline constexpr std::string_view kSigV4Date = "20260101T000000Z";

// A SecretBytes copy of `bytes`; aborts if the secure heap refuses (a
// harness failure, not a finding).
inline crypto::SecretBytes Secret(ByteView bytes) {
  auto s = crypto::SecretBytes::CopyOf(bytes);
  if (!s.ok()) {
    std::fprintf(stderr, "harness: %s\n", s.status().message().c_str());
    std::abort();
  }
  return std::move(*s);
}

// Makes OpenSSL create this thread's random generators now and keeps
// pointers to them in a global. OpenSSL 3 keeps them in pthread-specific
// data, which clang 14's LeakSanitizer does not scan: without a pin, the
// first leak check (after any input that allocates more than it frees)
// reports them as leaked.
inline void PinOpenSslRandom() {
  static void* pinned[3];
  pinned[0] = RAND_get0_primary(nullptr);
  pinned[1] = RAND_get0_public(nullptr);
  pinned[2] = RAND_get0_private(nullptr);
  FUZZ_CHECK(pinned[0] != nullptr && pinned[1] != nullptr && pinned[2] != nullptr);
}

// An anonymous in-memory file holding `data`: the backing file of the
// format targets, without touching the disk.
class MemFile {
 public:
  explicit MemFile(ByteView data) : fd_(::memfd_create("fuzz", MFD_CLOEXEC)) {
    if (fd_ < 0 || !PwriteFull(fd_, data, 0).ok()) {
      std::perror("harness: memfd");
      std::abort();
    }
  }
  ~MemFile() { ::close(fd_); }
  MemFile(const MemFile&) = delete;
  MemFile& operator=(const MemFile&) = delete;
  int fd() const { return fd_; }

 private:
  int fd_;
};

}  // namespace envelope::fuzz

#endif  // ENVELOPE_TESTS_FUZZ_FUZZ_UTIL_H_
