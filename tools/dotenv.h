// Plaintext dotenv: what `envelopectl secrets import` reads and `export`
// writes (docs/SECRETS.md, "Plaintext dotenv"). Values are decoded straight
// into crypto::SecretBytes and formatted into one; no plaintext passes
// through an ordinary heap string.
//
//   # comment
//   export DB_USER=app          unquoted: up to a " #" comment, trimmed
//   DB_PASSWORD='p@ss "word"'    single quotes: literal, may span lines
//   TLS_KEY="-----BEGIN…\n…"     double quotes: \n \r \t \\ \" \$ \` escapes
//
// There is no variable expansion: "$HOME" is five characters.
#ifndef ENVELOPE_TOOLS_DOTENV_H_
#define ENVELOPE_TOOLS_DOTENV_H_

#include <string_view>
#include <vector>

#include "core/base/coding.h"
#include "core/base/status.h"
#include "core/crypto/secret_bytes.h"
#include "tools/secrets_file.h"

namespace envelope::secrets {

// Every assignment of `text`, in order, with NamedValue::line its line
// number. Fails with InvalidArgument "SOURCE:N: reason" (Where()) on the
// first bad line: a syntax error, an invalid name (CheckName), a value
// CheckValue refuses, or a name assigned twice. Does not check the total
// size.
StatusOr<std::vector<NamedValue>> ParseDotenv(ByteView text,
                                              std::string_view source = "");

// One line per value that ParseDotenv reads back to the same bytes:
// NAME='value' when the value holds no quote, CR or LF, else NAME="…" with
// escapes. `comment`, if non-empty, goes first as "# comment".
StatusOr<crypto::SecretBytes> FormatDotenv(
    const std::vector<NamedValue>& values, std::string_view comment);

}  // namespace envelope::secrets

#endif  // ENVELOPE_TOOLS_DOTENV_H_
