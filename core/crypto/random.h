// Random bytes from OpenSSL's CSPRNG (per-thread DRBG seeded by getrandom).
#ifndef ENVELOPE_CORE_CRYPTO_RANDOM_H_
#define ENVELOPE_CORE_CRYPTO_RANDOM_H_

#include "core/base/coding.h"
#include "core/base/status.h"

namespace envelope::crypto {

// Fills `out`. Fails only if the DRBG cannot be seeded.
Status RandomBytes(MutableByteView out);

}  // namespace envelope::crypto

#endif  // ENVELOPE_CORE_CRYPTO_RANDOM_H_
