// Shamir's secret sharing over GF(2^8), byte by byte: a secret split into
// `count` shares, any `threshold` of which give it back and fewer give
// nothing about it. For the key service's recovery key (issue 15: backups
// whose key is split among custodians).
//
// The field is GF(2^8) modulo x^8 + x^4 + x^3 + x^2 + 1 (0x11D), the one
// libgfshare and its gfsplit/gfcombine use, so a share made here combines
// there and the other way round (tests/unit/shamir_test.cc checks both
// against Debian's libgfshare-bin). A share is its x coordinate (1..255)
// and one byte per byte of the secret. Shares, coefficients and the result
// live in SecretBytes; the field arithmetic does no table lookups and no
// branches on secret bytes.
#ifndef ENVELOPE_CORE_CRYPTO_SHAMIR_H_
#define ENVELOPE_CORE_CRYPTO_SHAMIR_H_

#include <cstdint>
#include <vector>

#include "core/base/status.h"
#include "core/crypto/secret_bytes.h"

namespace envelope::crypto {

struct ShamirShare {
  uint8_t x = 0;  // 1..255, public
  SecretBytes y;  // as long as the secret
};

// Shares x = 1..count of `secret` (not empty), any `threshold` of which
// recover it. REQUIRES: 2 <= threshold <= count <= 255 (InvalidArgument
// otherwise: a threshold of 1 would make every share the secret).
StatusOr<std::vector<ShamirShare>> ShamirSplit(const SecretBytes& secret, unsigned threshold,
                                               unsigned count);

// The secret from `shares`, by Lagrange interpolation at 0. Given at least
// the threshold's number of shares of one split, that is the secret; given
// fewer, it is a value unrelated to it (nothing can tell the two apart, so
// callers check the result, e.g. by opening what it sealed).
// InvalidArgument for no shares, an x of 0, a repeated x or shares of
// different lengths.
StatusOr<SecretBytes> ShamirCombine(const std::vector<ShamirShare>& shares);

}  // namespace envelope::crypto

#endif  // ENVELOPE_CORE_CRYPTO_SHAMIR_H_
