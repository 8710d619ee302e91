// The socket of one connection, below HTTP: who is at the other end, waiting
// for a request's first byte, and draining a client before closing on it.
#ifndef ENVELOPE_KEYSERVICE_PEER_SOCKET_H_
#define ENVELOPE_KEYSERVICE_PEER_SOCKET_H_

#include <chrono>
#include <string>

namespace envelope::keyservice {

// The peer a connection counts against (*key): the uid on the Unix socket,
// the address on TCP ("tcp:ADDR"); and for TCP the remote end as
// "ADDR:PORT" or "[ADDR]:PORT" (*remote). False if the kernel cannot say
// (the connection is then dropped).
bool PeerOf(int fd, bool tcp, std::string* key, std::string* remote);

// Waits up to `timeout` for the first byte of a request. False on timeout,
// end of stream or error.
bool WaitReadable(int fd, std::chrono::milliseconds timeout);

// After an error answer to a request whose body was not read (too large,
// malformed): stop writing, then read and drop what the client is still
// sending, for a bounded time and amount. Closing with unread input makes
// the kernel reset the connection (or, on a Unix socket, fail the client's
// next write with EPIPE), and a client still writing its body then fails
// before it ever reads the answer (RFC 9112, section 9.6).
void DrainBeforeClose(int fd);

}  // namespace envelope::keyservice

#endif  // ENVELOPE_KEYSERVICE_PEER_SOCKET_H_
