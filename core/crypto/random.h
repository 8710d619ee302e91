// Random bytes from OpenSSL's CSPRNG (per-thread DRBG seeded by getrandom).
#ifndef ENVELOPE_CORE_CRYPTO_RANDOM_H_
#define ENVELOPE_CORE_CRYPTO_RANDOM_H_

#include "core/base/coding.h"
#include "core/base/status.h"

namespace envelope::crypto {

// Fills `out`. Fails only if the DRBG cannot be seeded.
Status RandomBytes(MutableByteView out);

// Fills `out` (at most 64 bytes) with CSPRNG output for a public value such
// as a nonce. Same distribution as RandomBytes, but served from a per-thread
// buffer refilled 4 KiB at a time: OpenSSL 3.0's RAND_bytes costs ~0.7 us a
// call, which was 40% of sealing a 4 KiB chunk. The buffer is discarded in
// a forked child so parent and child never hand out the same bytes.
// Never use it for keys: the buffer is ordinary (swappable) memory.
Status RandomPublicBytes(MutableByteView out);

}  // namespace envelope::crypto

#endif  // ENVELOPE_CORE_CRYPTO_RANDOM_H_
