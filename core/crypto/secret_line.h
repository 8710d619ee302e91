// Reading one secret line — a passphrase, a value typed at a prompt —
// straight into the secure heap, with echo off on a terminal.
//
// Thread safety: not for concurrent use. While echo is off, a handler for
// SIGINT, SIGTERM, SIGHUP, SIGQUIT and SIGTSTP restores the terminal and
// re-raises the signal; it uses process-wide state.
#ifndef ENVELOPE_CORE_CRYPTO_SECRET_LINE_H_
#define ENVELOPE_CORE_CRYPTO_SECRET_LINE_H_

#include <cstddef>
#include <string_view>

#include "core/base/status.h"
#include "core/crypto/secret_bytes.h"

namespace envelope::crypto {

// Reads from `in` up to the first newline or end of input (the newline not
// included), one byte at a time, so nothing after the line is consumed. A
// line longer than `max_size` bytes is read to its end and refused
// (InvalidArgument "longer than N bytes"); none of it is kept.
//
// If `in` is a terminal, echo is turned off first; then `prompt` is written
// to `prompt_fd` (if >= 0), so nothing typed after the prompt is ever
// shown. Echo comes back, and a newline is written to `prompt_fd`, when the
// line ends, and also if one of the signals above arrives meanwhile.
StatusOr<SecretBytes> ReadSecretLine(int in, size_t max_size, int prompt_fd = -1,
                                     std::string_view prompt = {});

}  // namespace envelope::crypto

#endif  // ENVELOPE_CORE_CRYPTO_SECRET_LINE_H_
