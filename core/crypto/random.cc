#include "core/crypto/random.h"

#include <openssl/rand.h>

#include <pthread.h>

#include <atomic>
#include <climits>
#include <cstring>
#include <mutex>

namespace envelope::crypto {

Status RandomBytes(MutableByteView out) {
  size_t done = 0;
  while (done < out.size()) {
    size_t n = std::min<size_t>(out.size() - done, INT_MAX);
    if (RAND_bytes(out.data() + done, static_cast<int>(n)) != 1) {
      return Status::Internal("the OpenSSL CSPRNG failed");
    }
    done += n;
  }
  return Status::Ok();
}

namespace {

constexpr size_t kPublicPoolSizeInBytes = 4096;
constexpr size_t kMaxPublicRequestInBytes = 64;

// Bumped in every forked child; a pool filled in another generation is
// stale and must not be used.
std::atomic<uint64_t> g_fork_generation{0};
std::once_flag g_atfork_once;

struct PublicPool {
  uint8_t bytes[kPublicPoolSizeInBytes];
  size_t used = kPublicPoolSizeInBytes;  // empty until first refill
  uint64_t generation = 0;
};

thread_local PublicPool t_pool;

}  // namespace

Status RandomPublicBytes(MutableByteView out) {
  if (out.size() > kMaxPublicRequestInBytes) {
    return Status::InvalidArgument("RandomPublicBytes: request too large");
  }
  std::call_once(g_atfork_once, [] {
    pthread_atfork(nullptr, nullptr, [] { g_fork_generation.fetch_add(1); });
  });
  PublicPool& pool = t_pool;
  const uint64_t generation = g_fork_generation.load(std::memory_order_relaxed);
  if (pool.generation != generation ||
      kPublicPoolSizeInBytes - pool.used < out.size()) {
    ENVELOPE_RETURN_IF_ERROR(RandomBytes(pool.bytes));
    pool.used = 0;
    pool.generation = generation;
  }
  std::memcpy(out.data(), pool.bytes + pool.used, out.size());
  // Wipe what was handed out so no later caller can see the same bytes.
  std::memset(pool.bytes + pool.used, 0, out.size());
  pool.used += out.size();
  return Status::Ok();
}

}  // namespace envelope::crypto
