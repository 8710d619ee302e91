#include "core/crypto/secret_bytes.h"

#include <openssl/crypto.h>
#include <openssl/rand.h>

#include <atomic>
#include <cstring>
#include <mutex>
#include <utility>

namespace envelope::crypto {

namespace {
// Smallest allocation unit of the arena; 16 bytes fits a 128-bit key exactly
// and wastes at most 15 bytes on odd sizes.
constexpr size_t kSecureHeapMinAllocationInBytes = 16;

std::once_flag g_heap_once;
int g_heap_result = 0;  // CRYPTO_secure_malloc_init's return, set once
std::atomic<size_t> g_heap_size{0};  // set once, with g_heap_result
}  // namespace

StatusOr<SecureHeapState> InitSecureHeap(size_t size_in_bytes) {
  std::call_once(g_heap_once, [size_in_bytes] {
    g_heap_result = CRYPTO_secure_malloc_init(size_in_bytes,
                                              kSecureHeapMinAllocationInBytes);
    if (g_heap_result != 0) g_heap_size = size_in_bytes;
  });
  switch (g_heap_result) {
    case 1: return SecureHeapState::kLocked;
    case 2: return SecureHeapState::kUnlocked;
    default:
      return Status::ResourceExhausted(
          "cannot set up OpenSSL's secure heap for key material");
  }
}

SecureHeapUsage GetSecureHeapUsage() {
  SecureHeapUsage usage;
  usage.size_in_bytes = g_heap_size.load();
  if (usage.size_in_bytes == 0) return usage;
  usage.used_in_bytes = CRYPTO_secure_used();
  return usage;
}

SecretBytes::~SecretBytes() { Release(); }

SecretBytes::SecretBytes(SecretBytes&& other) noexcept
    : data_(std::exchange(other.data_, nullptr)),
      size_(std::exchange(other.size_, 0)) {}

SecretBytes& SecretBytes::operator=(SecretBytes&& other) noexcept {
  if (this != &other) {
    Release();
    data_ = std::exchange(other.data_, nullptr);
    size_ = std::exchange(other.size_, 0);
  }
  return *this;
}

bool SecretBytes::in_secure_heap() const {
  return data_ != nullptr && CRYPTO_secure_allocated(data_) == 1;
}

void SecretBytes::Release() {
  if (data_ != nullptr) {
    OPENSSL_secure_clear_free(data_, size_);
    data_ = nullptr;
    size_ = 0;
  }
}

StatusOr<SecretBytes> SecretBytes::Zeroed(size_t size) {
  auto heap = InitSecureHeap();
  if (!heap.ok()) return heap.status();
  if (size == 0) return SecretBytes();
  void* p = OPENSSL_secure_zalloc(size);
  // Refuse ordinary heap memory: if the arena is full OpenSSL returns NULL,
  // and we never fall back to swappable memory for a key.
  if (p == nullptr || !CRYPTO_secure_allocated(p)) {
    if (p != nullptr) OPENSSL_clear_free(p, size);
    return Status::ResourceExhausted("secure heap for key material is full");
  }
  return SecretBytes(static_cast<uint8_t*>(p), size);
}

StatusOr<SecretBytes> SecretBytes::Random(size_t size) {
  auto out = Zeroed(size);
  if (!out.ok()) return out;
  if (size > 0 && RAND_bytes(out->data(), static_cast<int>(size)) != 1) {
    return Status::Internal("the OpenSSL CSPRNG failed");
  }
  return out;
}

StatusOr<SecretBytes> SecretBytes::CopyOf(ByteView bytes) {
  auto out = Zeroed(bytes.size());
  if (!out.ok()) return out;
  if (!bytes.empty()) std::memcpy(out->data(), bytes.data(), bytes.size());
  return out;
}

void Cleanse(MutableByteView bytes) {
  if (!bytes.empty()) OPENSSL_cleanse(bytes.data(), bytes.size());
}

}  // namespace envelope::crypto
