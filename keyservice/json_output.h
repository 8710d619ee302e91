// JSON text for everything the key service writes out: responses, error
// bodies, audit records and stored documents.
//
// nlohmann::json's plain dump() throws on a string that is not valid UTF-8.
// Request bodies are parsed strictly (so their strings are valid), but
// other text reaches JSON output too: an X-Amz-Target header echoed in an
// error, an executable path from /proc, an HTTP parser message. One stray
// byte must not turn an answer into an exception, so every dump goes
// through here and replaces invalid bytes with U+FFFD.
#ifndef ENVELOPE_KEYSERVICE_JSON_OUTPUT_H_
#define ENVELOPE_KEYSERVICE_JSON_OUTPUT_H_

#include <string>

#include <nlohmann/json.hpp>

namespace envelope::keyservice {

// `j` as JSON text (compact, or pretty with `indent` >= 0). Never throws
// for invalid UTF-8 in strings.
template <typename Json>
std::string DumpJson(const Json& j, int indent = -1) {
  return j.dump(indent, ' ', false, nlohmann::json::error_handler_t::replace);
}

}  // namespace envelope::keyservice

#endif  // ENVELOPE_KEYSERVICE_JSON_OUTPUT_H_
