#include "core/crypto/secret_line.h"

#include <signal.h>
#include <termios.h>
#include <unistd.h>

#include <cerrno>
#include <string>

namespace envelope::crypto {

namespace {

constexpr int kRestoringSignals[] = {SIGINT, SIGTERM, SIGHUP, SIGQUIT, SIGTSTP};
constexpr size_t kSignalCount = sizeof(kRestoringSignals) / sizeof(kRestoringSignals[0]);

// Read by the signal handler: the terminal whose echo is off, and how it was.
int g_quiet_fd = -1;
struct termios g_saved_termios;

void RestoreTerminalAndReraise(int sig) {
  ::tcsetattr(g_quiet_fd, TCSAFLUSH, &g_saved_termios);
  ::signal(sig, SIG_DFL);
  ::raise(sig);
}

// Echo off on `fd` for its lifetime, if it is a terminal.
class QuietTerminal {
 public:
  explicit QuietTerminal(int fd) {
    if (!::isatty(fd) || ::tcgetattr(fd, &g_saved_termios) != 0) return;
    g_quiet_fd = fd;
    struct sigaction restore {};
    restore.sa_handler = RestoreTerminalAndReraise;
    sigemptyset(&restore.sa_mask);
    for (size_t i = 0; i < kSignalCount; ++i) {
      ::sigaction(kRestoringSignals[i], &restore, &previous_[i]);
    }
    struct termios quiet = g_saved_termios;
    quiet.c_lflag &= ~static_cast<tcflag_t>(ECHO | ECHONL);
    // TCSAFLUSH also drops anything typed before the prompt appears.
    active_ = ::tcsetattr(fd, TCSAFLUSH, &quiet) == 0;
  }
  ~QuietTerminal() {
    if (g_quiet_fd < 0) return;
    ::tcsetattr(g_quiet_fd, TCSAFLUSH, &g_saved_termios);
    for (size_t i = 0; i < kSignalCount; ++i) {
      ::sigaction(kRestoringSignals[i], &previous_[i], nullptr);
    }
    g_quiet_fd = -1;
  }
  QuietTerminal(const QuietTerminal&) = delete;
  QuietTerminal& operator=(const QuietTerminal&) = delete;

  bool active() const { return active_; }

 private:
  bool active_ = false;
  struct sigaction previous_[kSignalCount] {};
};

void WriteText(int fd, std::string_view text) {
  if (fd >= 0 && !text.empty()) (void)!::write(fd, text.data(), text.size());
}

}  // namespace

StatusOr<SecretBytes> ReadSecretLine(int in, size_t max_size, int prompt_fd,
                                     std::string_view prompt) {
  ENVELOPE_ASSIGN_OR_RETURN(SecretBytes buffer, SecretBytes::Zeroed(max_size));
  size_t n = 0;
  bool too_long = false;
  Status status;
  {
    QuietTerminal quiet(in);
    WriteText(prompt_fd, prompt);
    for (;;) {
      uint8_t c = 0;
      ssize_t r = ::read(in, &c, 1);
      if (r < 0 && errno == EINTR) continue;
      if (r < 0) {
        status = Status::FromErrno("read");
        break;
      }
      if (r == 0 || c == '\n') break;
      if (n < max_size) {
        buffer.data()[n++] = c;
      } else {
        too_long = true;
      }
      Cleanse({&c, 1});
    }
    // The user's Enter was not echoed.
    if (quiet.active()) WriteText(prompt_fd, "\n");
  }
  ENVELOPE_RETURN_IF_ERROR(status);
  if (too_long) {
    return Status::InvalidArgument("longer than " + std::to_string(max_size) + " bytes");
  }
  return SecretBytes::CopyOf(buffer.view().first(n));
}

}  // namespace envelope::crypto
