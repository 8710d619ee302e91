// Internal to envelopectl: the state a command runs with, and the output
// helpers its command files share. Commands are registered on the CLI11 app
// by AddKeyCommands, AddAuditCommands and AddSecretsCommands; the leaf
// subcommand that the command line selects stores its action in
// Context::action, which main() runs after parsing.
//
// Thread safety: none needed; envelopectl is single-threaded.
#ifndef ENVELOPE_TOOLS_ENVELOPECTL_H_
#define ENVELOPE_TOOLS_ENVELOPECTL_H_

#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include "core/base/status.h"
#include "kms/connect.h"
#include "kms/standard_kms_service.h"

namespace envelope::envelopectl {

using json = nlohmann::json;

class Context;
// A command's work. A failure is reported as "envelopectl: <message>" and
// exit status 1; a command whose answer is "no" (audit verify) sets
// Context::exit_code instead.
using Action = std::function<Status(Context& ctx)>;

class Context {
 public:
  // Global options.
  std::string endpoint_flag;
  std::string kms_api_flag = "auto";  // --kms-api: auto, envelope or standard
  std::string ca_file_flag;           // --ca-file: PEM bundle for https endpoints
  bool json_output = false;

  Action action;
  int exit_code = 0;

  // Calls "TrentService.<operation>" or "EnvelopeKeyService.<operation>".
  // The service is connected on first use, so parsing and --help need none.
  StatusOr<json> Kms(std::string_view operation, const json& request);
  StatusOr<json> Extension(std::string_view operation, const json& request);

  // The key service (kms/key_service.h), for the secrets commands: its
  // typed calls keep plaintext in the secure heap. Connected on first use.
  StatusOr<kms::KeyService*> Keys();
  // Closes pooled connections: `secrets exec` calls it before execve so
  // that the program it starts inherits no connection to the key service.
  void CloseConnections() {
    if (service_) service_->CloseConnections();
  }

 private:
  StatusOr<kms::StandardKms*> Service();

  std::unique_ptr<kms::StandardKms> service_;
};

// Makes `command` store `action` in ctx->action when it is selected.
void OnRun(CLI::App* command, Context* ctx, Action action);

void AddKeyCommands(CLI::App* app, Context* ctx);
void AddAuditCommands(CLI::App* app, Context* ctx);
void AddCustodyCommands(CLI::App* app, Context* ctx);
void AddKeyStoreCommands(CLI::App* app, Context* ctx);
void AddSecretsCommands(CLI::App* app, Context* ctx);

// --- Calls. ---

// Calls a paginated List operation until the service stops truncating and
// returns the concatenated `field` arrays.
StatusOr<json> ListAll(Context& ctx, std::string_view operation, json request,
                       const char* field);

// One line (at most 64 bytes) from `fd`, read by crypto::ReadSecretLine
// (no echo at a terminal, `prompt` on stderr), as text for a request
// field the caller wipes. For PINs and passphrases, never argv.
StatusOr<std::string> ReadSecretText(int fd, const char* prompt);

// The contents of a text file; "-" reads standard input.
StatusOr<std::string> ReadTextFile(const std::string& path);

// --- Reading responses without trusting their shape. ---

// The member as text: strings as they are, numbers and booleans printed,
// "" when absent or null.
std::string Field(const json& object, const char* name);
// An epoch-seconds member as UTC ISO-8601 ("2024-05-01T12:00:00Z"), or ""
// when absent.
std::string DateField(const json& object, const char* name);
bool BoolField(const json& object, const char* name);

// --- Output. ---

// Pretty-printed JSON on stdout (invalid UTF-8 replaced, never thrown).
void PrintJson(const json& value);
// Left-aligned columns separated by two spaces; control characters in cells
// are replaced, so that a key description cannot drive the terminal.
void PrintTable(const std::vector<std::string>& header,
                const std::vector<std::vector<std::string>>& rows);
// "Name:  value" lines with aligned values; rows with an empty value are
// left out. Control characters replaced as in PrintTable.
void PrintFields(const std::vector<std::pair<std::string, std::string>>& rows);
// One line of untrusted text with control characters replaced.
std::string Printable(std::string_view text);

}  // namespace envelope::envelopectl

#endif  // ENVELOPE_TOOLS_ENVELOPECTL_H_
