#include "core/crypto/random.h"

#include <openssl/rand.h>

#include <climits>

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

}  // namespace envelope::crypto
