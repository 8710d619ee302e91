// Where envelope-keyd listens: the --listen address and the rule that plain
// TCP stays on loopback, and the directory of the Unix socket.
#ifndef ENVELOPE_KEYSERVICE_LISTEN_ADDRESS_H_
#define ENVELOPE_KEYSERVICE_LISTEN_ADDRESS_H_

#include <cstdint>
#include <string>
#include <string_view>

#include "core/base/status.h"

namespace envelope::keyservice {

// --listen ADDR:PORT: an IPv4 address, or an IPv6 address in brackets
// ("[::1]:7800"); PORT 0 to 65535 (0: any free port).
struct ListenAddress {
  std::string host;  // the address, without brackets
  uint16_t port = 0;
  bool loopback = false;  // 127.0.0.0/8 or ::1
};
// InvalidArgument, saying what form is wanted, for anything else.
StatusOr<ListenAddress> ParseListenAddress(std::string_view text);
// An address as it appears in a URL or Host header: IPv6 in brackets.
std::string UrlHost(std::string_view address);
// Plain TCP only on loopback: InvalidArgument, saying why and what to do,
// for a non-loopback `address` without TLS.
Status CheckListenerTransport(const ListenAddress& address, bool tls);

// Makes sure the directory that will hold `socket_path` belongs to this
// process's user (or root) and is writable by nobody else: creates it if
// missing (mode 0700, or 0755 when running as root, whose socket every
// local user is meant to reach), then checks it and every directory above
// it (kms::CheckSocketDirectory).
// FailedPrecondition, saying what is wrong, if it cannot be trusted.
Status PrepareSocketDirectory(const std::string& socket_path);

}  // namespace envelope::keyservice

#endif  // ENVELOPE_KEYSERVICE_LISTEN_ADDRESS_H_
