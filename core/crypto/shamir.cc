#include "core/crypto/shamir.h"

#include "core/crypto/random.h"

namespace envelope::crypto {

namespace {

// a * b in GF(2^8) mod 0x11D: shift-and-add over all eight bits of b, with
// masks instead of branches, so the time does not depend on the operands.
uint8_t Mul(uint8_t a, uint8_t b) {
  uint8_t product = 0;
  for (int i = 0; i < 8; ++i) {
    product ^= static_cast<uint8_t>(-(b & 1) & a);
    const uint8_t carry = static_cast<uint8_t>(-(a >> 7));
    a = static_cast<uint8_t>((a << 1) ^ (carry & 0x1D));
    b >>= 1;
  }
  return product;
}

// a^-1 = a^254 (a != 0). Only ever applied to x coordinates, which are
// public; constant-time anyway.
uint8_t Inverse(uint8_t a) {
  uint8_t result = 1;
  uint8_t power = a;
  for (int e = 254; e > 0; e >>= 1) {
    if (e & 1) result = Mul(result, power);
    power = Mul(power, power);
  }
  return result;
}

}  // namespace

StatusOr<std::vector<ShamirShare>> ShamirSplit(const SecretBytes& secret, unsigned threshold,
                                               unsigned count) {
  if (secret.size() == 0) return Status::InvalidArgument("nothing to split");
  if (threshold < 2 || threshold > count || count > 255) {
    return Status::InvalidArgument("a split needs 2 <= threshold <= shares <= 255 (got " +
                                   std::to_string(threshold) + " of " + std::to_string(count) +
                                   ")");
  }
  const size_t n = secret.size();
  // Coefficients 1..threshold-1 of each byte's polynomial, random; the
  // constant term is the secret's byte.
  ENVELOPE_ASSIGN_OR_RETURN(SecretBytes coefficients, SecretBytes::Random((threshold - 1) * n));
  std::vector<ShamirShare> shares;
  shares.reserve(count);
  for (unsigned i = 1; i <= count; ++i) {
    const uint8_t x = static_cast<uint8_t>(i);
    ENVELOPE_ASSIGN_OR_RETURN(SecretBytes y, SecretBytes::Zeroed(n));
    for (size_t j = 0; j < n; ++j) {
      // Horner: ((a_{k-1} x + a_{k-2}) x + ...) x + a_0.
      uint8_t acc = 0;
      for (unsigned m = threshold - 1; m >= 1; --m) {
        acc = Mul(acc, x) ^ coefficients.data()[(m - 1) * n + j];
      }
      y.data()[j] = Mul(acc, x) ^ secret.data()[j];
    }
    shares.push_back(ShamirShare{x, std::move(y)});
  }
  return shares;
}

StatusOr<SecretBytes> ShamirCombine(const std::vector<ShamirShare>& shares) {
  if (shares.empty()) return Status::InvalidArgument("no shares");
  const size_t n = shares[0].y.size();
  bool seen[256] = {};
  for (const ShamirShare& s : shares) {
    if (s.x == 0) return Status::InvalidArgument("a share's x is 0");
    if (seen[s.x]) return Status::InvalidArgument("share " + std::to_string(s.x) + " given twice");
    seen[s.x] = true;
    if (s.y.size() != n || n == 0) return Status::InvalidArgument("shares of different lengths");
  }
  ENVELOPE_ASSIGN_OR_RETURN(SecretBytes secret, SecretBytes::Zeroed(n));
  for (size_t i = 0; i < shares.size(); ++i) {
    // L_i(0) = prod_{m != i} x_m / (x_i - x_m); subtraction is XOR.
    uint8_t numerator = 1, denominator = 1;
    for (size_t m = 0; m < shares.size(); ++m) {
      if (m == i) continue;
      numerator = Mul(numerator, shares[m].x);
      denominator = Mul(denominator, shares[i].x ^ shares[m].x);
    }
    const uint8_t weight = Mul(numerator, Inverse(denominator));
    for (size_t j = 0; j < n; ++j) secret.data()[j] ^= Mul(shares[i].y.data()[j], weight);
  }
  return secret;
}

}  // namespace envelope::crypto
