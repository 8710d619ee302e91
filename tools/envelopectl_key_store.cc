// `envelopectl key-store`: custom key stores, KMS keys kept on a PKCS#11
// token (root only; docs/KEYSERVICE.md, "Custom key stores"). The token's
// PIN (AWS's KeyStorePassword) is read from a file descriptor or typed at
// the terminal without echo, never taken from the command line.
#include <unistd.h>

#include <memory>
#include <string>

#include "core/crypto/secret_bytes.h"
#include "core/crypto/secret_line.h"
#include "tools/envelopectl.h"

namespace envelope::envelopectl {

namespace {

void CleanseText(std::string& s) {
  crypto::Cleanse({reinterpret_cast<uint8_t*>(s.data()), s.size()});
}

}  // namespace

StatusOr<std::string> ReadSecretText(int fd, const char* prompt) {
  ENVELOPE_ASSIGN_OR_RETURN(crypto::SecretBytes line,
                            crypto::ReadSecretLine(fd, 64, STDERR_FILENO, prompt));
  std::string text(reinterpret_cast<const char*>(line.data()), line.size());
  if (!text.empty() && text.back() == '\r') text.pop_back();
  if (text.empty()) return Status::InvalidArgument("nothing given");
  return text;
}

namespace {

StatusOr<std::string> ReadPassword(int fd) {
  return ReadSecretText(fd, "KeyStorePassword (the token's user PIN): ");
}

// The request with the password read into it; the caller's Call wipes it.
StatusOr<json> Call(Context& c, const char* op, json request) {
  auto r = c.Kms(op, request);
  auto it = request.find("KeyStorePassword");
  if (it != request.end() && it->is_string()) CleanseText(it->get_ref<std::string&>());
  return r;
}

struct Args {
  std::string id;
  std::string name;
  std::string cluster;
  std::string trust_anchor_file;
  int password_fd = STDIN_FILENO;
  bool password = false;
};

}  // namespace

void AddKeyStoreCommands(CLI::App* app, Context* ctx) {
  CLI::App* ks = app->add_subcommand(
      "key-store", "custom key stores: KMS keys on a PKCS#11 token (root only)");
  ks->require_subcommand(1);

  auto create_args = std::make_shared<Args>();
  CLI::App* create = ks->add_subcommand(
      "create", "record a store on a token envelope-keyd attaches (--hsm-cluster); print its id");
  create->add_option("NAME", create_args->name, "a name unique among the stores")->required();
  create->add_option("--cluster", create_args->cluster, "the token's cluster id (cluster-...)")
      ->required();
  create->add_option("--trust-anchor-file", create_args->trust_anchor_file,
                     "kept and shown as AWS's TrustAnchorCertificate (not used)");
  create->add_option("--password-fd", create_args->password_fd,
                     "read the token's user PIN from this fd (default: standard input, "
                     "asked for without echo at a terminal)");
  OnRun(create, ctx, [create_args](Context& c) -> Status {
    ENVELOPE_ASSIGN_OR_RETURN(std::string pin, ReadPassword(create_args->password_fd));
    json request = {{"CustomKeyStoreName", create_args->name},
                    {"CloudHsmClusterId", create_args->cluster},
                    {"KeyStorePassword", pin}};
    CleanseText(pin);
    if (!create_args->trust_anchor_file.empty()) {
      ENVELOPE_ASSIGN_OR_RETURN(request["TrustAnchorCertificate"],
                                ReadTextFile(create_args->trust_anchor_file));
    }
    ENVELOPE_ASSIGN_OR_RETURN(json r, Call(c, "CreateCustomKeyStore", std::move(request)));
    if (c.json_output) {
      PrintJson(r);
    } else {
      std::printf("%s\n", Printable(Field(r, "CustomKeyStoreId")).c_str());
    }
    return Status::Ok();
  });

  CLI::App* list = ks->add_subcommand("list", "the stores and their connection states");
  OnRun(list, ctx, [](Context& c) -> Status {
    ENVELOPE_ASSIGN_OR_RETURN(json all, ListAll(c, "DescribeCustomKeyStores", json::object(),
                                                "CustomKeyStores"));
    if (c.json_output) {
      PrintJson(all);
      return Status::Ok();
    }
    std::vector<std::vector<std::string>> rows;
    for (const json& s : all) {
      std::string state = Field(s, "ConnectionState");
      if (!Field(s, "ConnectionErrorCode").empty()) state += " (" + Field(s, "ConnectionErrorCode") + ")";
      rows.push_back({Field(s, "CustomKeyStoreId"), Field(s, "CustomKeyStoreName"),
                      Field(s, "CloudHsmClusterId"), state, DateField(s, "CreationDate")});
    }
    PrintTable({"ID", "NAME", "CLUSTER", "STATE", "CREATED"}, rows);
    return Status::Ok();
  });

  for (const char* verb : {"connect", "disconnect", "delete"}) {
    auto id = std::make_shared<std::string>();
    const std::string v = verb;
    CLI::App* cmd = ks->add_subcommand(
        verb, v == "connect"      ? "log in to the store's token (see its state with list)"
              : v == "disconnect" ? "close the session: its keys become unavailable"
                                  : "delete a disconnected store that holds no keys");
    cmd->add_option("ID", *id, "cks-...")->required();
    const std::string op = v == "connect"      ? "ConnectCustomKeyStore"
                           : v == "disconnect" ? "DisconnectCustomKeyStore"
                                               : "DeleteCustomKeyStore";
    OnRun(cmd, ctx, [id, op](Context& c) -> Status {
      ENVELOPE_ASSIGN_OR_RETURN(json r, c.Kms(op, {{"CustomKeyStoreId", *id}}));
      if (c.json_output) PrintJson(r);
      return Status::Ok();
    });
  }

  auto update_args = std::make_shared<Args>();
  CLI::App* update = ks->add_subcommand("update", "rename, move or re-PIN a disconnected store");
  update->add_option("ID", update_args->id, "cks-...")->required();
  update->add_option("--name", update_args->name, "a new name");
  update->add_option("--cluster", update_args->cluster, "another cluster id holding the same keys");
  update->add_flag("--password", update_args->password,
                   "give a new PIN (read as for create)");
  update->add_option("--password-fd", update_args->password_fd, "with --password: read it from this fd");
  OnRun(update, ctx, [update_args](Context& c) -> Status {
    json request = {{"CustomKeyStoreId", update_args->id}};
    if (!update_args->name.empty()) request["NewCustomKeyStoreName"] = update_args->name;
    if (!update_args->cluster.empty()) request["CloudHsmClusterId"] = update_args->cluster;
    if (update_args->password) {
      ENVELOPE_ASSIGN_OR_RETURN(std::string pin, ReadPassword(update_args->password_fd));
      request["KeyStorePassword"] = pin;
      CleanseText(pin);
    }
    ENVELOPE_ASSIGN_OR_RETURN(json r, Call(c, "UpdateCustomKeyStore", std::move(request)));
    if (c.json_output) PrintJson(r);
    return Status::Ok();
  });
}

}  // namespace envelope::envelopectl
