// SecretBytes: the only type that holds plaintext key material.
//
// Storage comes from OpenSSL's secure heap: an mmap'ed arena that is
// mlock'ed (never swapped), excluded from core dumps (MADV_DONTDUMP) and
// fenced by guard pages. Every buffer is wiped with OPENSSL_cleanse when it
// is freed. The type is move-only so that key bytes are never silently
// duplicated; a moved-from object is empty.
//
// Thread safety: a SecretBytes object is not synchronised; distinct objects
// may be used from distinct threads (the secure heap has its own lock).
#ifndef ENVELOPE_CORE_CRYPTO_SECRET_BYTES_H_
#define ENVELOPE_CORE_CRYPTO_SECRET_BYTES_H_

#include <cstddef>
#include <cstdint>

#include "core/base/coding.h"
#include "core/base/status.h"

namespace envelope::crypto {

// Default arena size: 1 MiB holds 32,768 256-bit keys, more than the bounded
// DEK cache and the key service's working set need, and stays well inside
// the 8 MiB RLIMIT_MEMLOCK a Debian user gets by default.
inline constexpr size_t kDefaultSecureHeapSizeInBytes = size_t{1} << 20;

enum class SecureHeapState {
  kLocked,    // arena allocated and mlock'ed
  kUnlocked,  // arena allocated, but mlock or madvise failed (RLIMIT_MEMLOCK)
};

// Sets up the secure heap once per process; later calls return the state of
// the first. Binaries call it at start-up to log kUnlocked as a warning;
// SecretBytes calls it lazily with the default size otherwise.
// REQUIRES: size_in_bytes is a power of two.
StatusOr<SecureHeapState> InitSecureHeap(
    size_t size_in_bytes = kDefaultSecureHeapSizeInBytes);

// How full the secure heap is. `used_in_bytes` counts OpenSSL's allocation
// units (a request is rounded up to a power of two of at least 16 bytes), so
// it is what the next allocation competes with. Both are 0 before
// InitSecureHeap.
struct SecureHeapUsage {
  size_t size_in_bytes = 0;
  size_t used_in_bytes = 0;
};
SecureHeapUsage GetSecureHeapUsage();

class SecretBytes {
 public:
  // An empty value holding no storage.
  SecretBytes() = default;
  ~SecretBytes();

  SecretBytes(SecretBytes&& other) noexcept;
  SecretBytes& operator=(SecretBytes&& other) noexcept;
  SecretBytes(const SecretBytes&) = delete;
  SecretBytes& operator=(const SecretBytes&) = delete;

  // `size` zero bytes in the secure heap. Fails with ResourceExhausted when
  // the arena is full.
  static StatusOr<SecretBytes> Zeroed(size_t size);
  // `size` bytes from the CSPRNG.
  static StatusOr<SecretBytes> Random(size_t size);
  // A copy of `bytes`. The caller remains responsible for wiping its source.
  static StatusOr<SecretBytes> CopyOf(ByteView bytes);

  uint8_t* data() { return data_; }
  const uint8_t* data() const { return data_; }
  size_t size() const { return size_; }
  bool empty() const { return size_ == 0; }
  ByteView view() const { return {data_, size_}; }
  MutableByteView mutable_view() { return {data_, size_}; }
  // True if the bytes live in the secure heap (always, for a non-empty
  // value; exposed so tests can check it).
  bool in_secure_heap() const;

 private:
  SecretBytes(uint8_t* data, size_t size) : data_(data), size_(size) {}
  void Release();

  uint8_t* data_ = nullptr;
  size_t size_ = 0;
};

// Wipes a buffer that held secret or sensitive bytes outside SecretBytes
// (e.g. a plaintext field of a JSON request) in a way the compiler keeps.
void Cleanse(MutableByteView bytes);

}  // namespace envelope::crypto

#endif  // ENVELOPE_CORE_CRYPTO_SECRET_BYTES_H_
