// envelopectl: manages the keys of envelope-keyd over the AWS KMS protocol.
//
//   envelopectl [--endpoint unix:/PATH | http://127.0.0.1:PORT] [--json]
//       key create [--description TEXT] [--policy-file FILE] [--tag K=V ...]
//       key list | describe KEY
//       key alias create|update ALIAS KEY | delete ALIAS | list [KEY]
//       key rotate KEY | rotations KEY
//       key enable|disable KEY
//       key schedule-deletion KEY [--days N] | cancel-deletion KEY
//       key auto-rotation enable KEY [--period-days N] | disable KEY | status KEY
//       key policy get KEY | put KEY FILE [--bypass-lockout-check]
//       key retire KEY --below VERSION
//       audit tail [-n N] | verify
//       secrets --file PATH [--key KEY]
//           set APP NAME [--raw]        (value from stdin or a no-echo prompt)
//           get APP NAME [--raw] | list APP | rm APP NAME
//           import APP FILE | export APP --plaintext | rotate APP
//           exec APP [--pristine] [--secrets-fd N] -- CMD [ARG...]
//
// The endpoint is --endpoint, else $ENVELOPE_KMS_ENDPOINT, else the default
// Unix socket (kms/endpoint.h); over TCP, requests are signed with
// AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY from the environment. KEY is
// passed to the service as given: a key id, key ARN or alias/NAME (the
// service decides which operations accept aliases).
//
// Nothing secret is ever taken from the command line: argv is visible to
// every user in /proc. Policies come from files; no command takes key
// material or plaintext. Secret values (docs/SECRETS.md) come from standard
// input, a prompt that does not echo, or a plaintext dotenv file.
//
// Exit status: 0 success, 1 failure (one line "envelopectl: <message>" on
// stderr, or "audit log FAILED ..." for audit verify), 2 usage error;
// `secrets exec` exits as CMD does, or 127 (not found) / 126 (not
// executable) when CMD cannot be started.
#include "tools/envelopectl.h"

#include <fcntl.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>

#include "core/base/fd_io.h"
#include "core/base/process_hygiene.h"
#include "kms/endpoint.h"

namespace envelope::envelopectl {

namespace {
constexpr size_t kMaxInputFileInBytes = 1 << 20;
}  // namespace

StatusOr<kms::StandardKms*> Context::Service() {
  if (service_) return service_.get();
  kms::ConnectOptions options;
  options.endpoint = endpoint_flag;
  ENVELOPE_ASSIGN_OR_RETURN(options.api, kms::ParseKmsApi(kms_api_flag));
  options.ca_file = ca_file_flag;
  ENVELOPE_ASSIGN_OR_RETURN(service_, kms::ConnectKms(options));
  return service_.get();
}

StatusOr<kms::KeyService*> Context::Keys() {
  ENVELOPE_ASSIGN_OR_RETURN(kms::StandardKms * service, Service());
  return service;
}

StatusOr<json> Context::Kms(std::string_view operation, const json& request) {
  ENVELOPE_ASSIGN_OR_RETURN(kms::StandardKms * service, Service());
  return service->client().Call(std::string(kms::kTrentServicePrefix) + std::string(operation),
                                request);
}

StatusOr<json> Context::Extension(std::string_view operation, const json& request) {
  ENVELOPE_ASSIGN_OR_RETURN(kms::StandardKms * service, Service());
  return service->client().Call(std::string(kms::kExtensionServicePrefix) + std::string(operation),
                                request);
}

void OnRun(CLI::App* command, Context* ctx, Action action) {
  command->callback([ctx, action = std::move(action)] { ctx->action = action; });
}

StatusOr<json> ListAll(Context& ctx, std::string_view operation, json request,
                       const char* field) {
  json all = json::array();
  std::string previous_marker;
  while (true) {
    ENVELOPE_ASSIGN_OR_RETURN(json page, ctx.Kms(operation, request));
    auto it = page.find(field);
    if (it != page.end() && it->is_array()) {
      for (auto& item : *it) all.push_back(std::move(item));
    }
    const std::string marker = Field(page, "NextMarker");
    // A marker that does not move would loop forever: stop instead.
    if (!BoolField(page, "Truncated") || marker.empty() ||
        marker == previous_marker) {
      break;
    }
    request["Marker"] = marker;
    previous_marker = marker;
  }
  return all;
}

StatusOr<std::string> ReadTextFile(const std::string& path) {
  UniqueFd owned;
  int fd = STDIN_FILENO;
  if (path != "-") {
    owned = UniqueFd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
    if (!owned.valid()) return Status::FromErrno("cannot open " + path);
    fd = owned.get();
  }
  std::string text;
  char buf[65536];
  while (true) {
    ssize_t n = ::read(fd, buf, sizeof(buf));
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      return Status::FromErrno("cannot read " +
                               (path == "-" ? "standard input" : path));
    }
    if (n == 0) break;
    text.append(buf, static_cast<size_t>(n));
    // Policies are small (the service takes request bodies of at most
    // 64 KiB); stop early on a file given by mistake.
    if (text.size() > kMaxInputFileInBytes) {
      return Status::InvalidArgument(path + " is larger than " +
                                     std::to_string(kMaxInputFileInBytes) +
                                     " bytes");
    }
  }
  return text;
}

std::string Field(const json& object, const char* name) {
  if (!object.is_object()) return "";
  auto it = object.find(name);
  if (it == object.end() || it->is_null()) return "";
  if (it->is_string()) return it->get<std::string>();
  return it->dump(-1, ' ', false, json::error_handler_t::replace);
}

std::string DateField(const json& object, const char* name) {
  if (!object.is_object()) return "";
  auto it = object.find(name);
  if (it == object.end() || !it->is_number()) return "";
  // AWS sends fractional seconds; the key service whole ones.
  const time_t t = static_cast<time_t>(it->get<double>());
  tm utc{};
  if (gmtime_r(&t, &utc) == nullptr) return "";
  char buf[32];
  std::strftime(buf, sizeof(buf), "%Y-%m-%dT%H:%M:%SZ", &utc);
  return buf;
}

bool BoolField(const json& object, const char* name) {
  if (!object.is_object()) return false;
  auto it = object.find(name);
  return it != object.end() && it->is_boolean() && it->get<bool>();
}

void PrintJson(const json& value) {
  std::printf("%s\n",
              value.dump(2, ' ', false, json::error_handler_t::replace)
                  .c_str());
}

std::string Printable(std::string_view text) {
  std::string out(text);
  for (char& c : out) {
    const auto u = static_cast<unsigned char>(c);
    if (u < 0x20 || u == 0x7f) c = '?';
  }
  return out;
}

void PrintTable(const std::vector<std::string>& header,
                const std::vector<std::vector<std::string>>& rows) {
  std::vector<size_t> widths(header.size(), 0);
  auto measure = [&widths](const std::vector<std::string>& row) {
    for (size_t i = 0; i < row.size() && i < widths.size(); ++i) {
      widths[i] = std::max(widths[i], row[i].size());
    }
  };
  measure(header);
  for (const auto& row : rows) measure(row);
  auto print = [&widths](const std::vector<std::string>& row) {
    std::string line;
    for (size_t i = 0; i < row.size() && i < widths.size(); ++i) {
      std::string cell = Printable(row[i]);
      if (i + 1 < row.size()) cell.resize(widths[i] + 2, ' ');
      line += cell;
    }
    while (!line.empty() && line.back() == ' ') line.pop_back();
    std::printf("%s\n", line.c_str());
  };
  print(header);
  for (const auto& row : rows) print(row);
}

void PrintFields(
    const std::vector<std::pair<std::string, std::string>>& rows) {
  size_t width = 0;
  for (const auto& [name, value] : rows) {
    if (!value.empty()) width = std::max(width, name.size());
  }
  for (const auto& [name, value] : rows) {
    if (value.empty()) continue;
    std::string label = name + ":";
    label.resize(width + 3, ' ');
    std::printf("%s%s\n", label.c_str(), Printable(value).c_str());
  }
}

}  // namespace envelope::envelopectl

int main(int argc, char** argv) {
  // Before anything holds key material: no core dumps, no ptrace by peers.
  if (envelope::Status s = envelope::HardenProcess(); !s.ok()) {
    std::fprintf(stderr, "envelopectl: %s\n", s.ToString().c_str());
    return 1;
  }
  namespace ctl = envelope::envelopectl;
  constexpr int kUsageExitCode = 2;
  ctl::Context ctx;
  CLI::App app{
      "envelopectl: keys, audit log and application secrets of the "
      "envelope-keyd key service"};
  app.require_subcommand(1);
  // Global options may also follow the command: "key list --json".
  app.fallthrough();
  app.add_option("--endpoint", ctx.endpoint_flag,
                 "unix:/PATH or http://127.0.0.1:PORT (default: "
                 "$ENVELOPE_KMS_ENDPOINT, else unix:" +
                     envelope::kms::DefaultSocketPath() + ")");
  app.add_option("--kms-api", ctx.kms_api_flag,
                 "auto (default), envelope (envelope-keyd's extensions) or standard (AWS KMS's "
                 "published API only)");
  app.add_option("--ca-file", ctx.ca_file_flag,
                 "https endpoints: trust this PEM CA bundle instead of the system store");
  app.add_flag("--json", ctx.json_output, "print the service's JSON");
  ctl::AddKeyCommands(&app, &ctx);
  ctl::AddAuditCommands(&app, &ctx);
  ctl::AddCustodyCommands(&app, &ctx);
  ctl::AddKeyStoreCommands(&app, &ctx);
  ctl::AddSecretsCommands(&app, &ctx);

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    // Prints help (exit 0) or the usage error.
    const int code = app.exit(e);
    return code == 0 ? 0 : kUsageExitCode;
  }
  if (!ctx.action) return kUsageExitCode;

  envelope::Status status;
  try {
    status = ctx.action(ctx);
  } catch (const std::exception& e) {
    // Only a response of an unexpected shape gets here (nlohmann::json
    // throws on type mismatches); report it like any other failure.
    status = envelope::Status::Internal(
        std::string("unexpected response from the key service: ") + e.what());
  }
  std::fflush(stdout);
  if (!status.ok()) {
    std::fprintf(stderr, "envelopectl: %s\n",
                 ctl::Printable(status.message()).c_str());
    return 1;
  }
  return ctx.exit_code;
}
