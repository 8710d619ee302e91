#include "core/crypto/scrypt.h"

#include <openssl/evp.h>

namespace envelope::crypto {

StatusOr<SecretBytes> Scrypt(ByteView passphrase, ByteView salt, const ScryptParams& params,
                             size_t length) {
  ENVELOPE_ASSIGN_OR_RETURN(SecretBytes out, SecretBytes::Zeroed(length));
  // Allow the memory scrypt needs (128 * r * n bytes) plus slack.
  const uint64_t maxmem = 128 * params.r * params.n + (uint64_t{1} << 20);
  if (EVP_PBE_scrypt(reinterpret_cast<const char*>(passphrase.data()), passphrase.size(),
                     salt.data(), salt.size(), params.n, params.r, params.p, maxmem,
                     out.data(), out.size()) != 1) {
    return Status::InvalidArgument("scrypt failed (bad parameters or out of memory)");
  }
  return out;
}

}  // namespace envelope::crypto
