// envelopectl key ...: key management over the TrentService operations and
// the RetireKeyVersions extension. Each command prints a short human answer,
// or with --json the service's response.
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "tools/envelopectl.h"

namespace envelope::envelopectl {

namespace {

// --tag KEY=VALUE: checked while parsing, so a malformed tag is a usage
// error (exit 2) rather than a service error.
const CLI::Validator kTagValidator(
    [](std::string& value) -> std::string {
      const size_t eq = value.find('=');
      if (eq == std::string::npos || eq == 0) {
        return "expected KEY=VALUE, got '" + value + "'";
      }
      return "";
    },
    "KEY=VALUE");

// A positional KEY; every key command has one.
CLI::Option* AddKeyArgument(CLI::App* command, std::string* key) {
  return command
      ->add_option("KEY", *key, "key id, key ARN or alias/NAME (as the "
                                "operation accepts)")
      ->required();
}

json Tags(const std::vector<std::string>& tags) {
  json out = json::array();
  for (const std::string& t : tags) {
    const size_t eq = t.find('=');
    out.push_back({{"TagKey", t.substr(0, eq)}, {"TagValue", t.substr(eq + 1)}});
  }
  return out;
}

const json& Metadata(const json& response) {
  static const json kEmpty = json::object();
  auto it = response.find("KeyMetadata");
  return it != response.end() && it->is_object() ? *it : kEmpty;
}

void PrintMetadata(const json& m) {
  PrintFields({
      {"KeyId", Field(m, "KeyId")},
      {"Arn", Field(m, "Arn")},
      {"Description", Field(m, "Description")},
      {"State", Field(m, "KeyState")},
      {"Created", DateField(m, "CreationDate")},
      {"CurrentKeyVersion", Field(m, "CurrentKeyVersion")},
      {"MinKeyVersion", Field(m, "MinKeyVersion")},
      {"DeletionDate", DateField(m, "DeletionDate")},
      {"PendingDeletionWindowInDays", Field(m, "PendingDeletionWindowInDays")},
      {"KeyUsage", Field(m, "KeyUsage")},
      {"KeySpec", Field(m, "KeySpec")},
      {"Origin", Field(m, "Origin")},
  });
}

// Runs one operation whose only argument is the key, printing nothing (or
// the response with --json).
void AddSimpleKeyCommand(CLI::App* parent, const char* name,
                         const char* description, const char* operation,
                         Context* ctx) {
  auto key = std::make_shared<std::string>();
  CLI::App* cmd = parent->add_subcommand(name, description);
  AddKeyArgument(cmd, key.get());
  OnRun(cmd, ctx, [key, operation](Context& c) -> Status {
    ENVELOPE_ASSIGN_OR_RETURN(json r, c.Kms(operation, {{"KeyId", *key}}));
    if (c.json_output) PrintJson(r);
    return Status::Ok();
  });
}

void AddCreate(CLI::App* parent, Context* ctx) {
  struct Args {
    std::string description;
    std::string policy_file;
    std::vector<std::string> tags;
    std::string custom_key_store;
  };
  auto args = std::make_shared<Args>();
  CLI::App* cmd = parent->add_subcommand(
      "create", "create a symmetric key and print its id");
  cmd->add_option("--custom-key-store", args->custom_key_store,
                  "make the key's material on this custom key store's token (cks-...)");
  CLI::Option* description = cmd->add_option(
      "--description", args->description, "free text shown by key list");
  CLI::Option* policy = cmd->add_option(
      "--policy-file", args->policy_file,
      "key policy JSON file, - for stdin (default: the service's default "
      "policy for the caller)");
  cmd->add_option("--tag", args->tags, "a tag KEY=VALUE (repeatable)")
      ->check(kTagValidator);
  OnRun(cmd, ctx, [args, description, policy](Context& c) -> Status {
    json request = json::object();
    if (description->count() > 0) request["Description"] = args->description;
    if (policy->count() > 0) {
      ENVELOPE_ASSIGN_OR_RETURN(request["Policy"],
                                ReadTextFile(args->policy_file));
    }
    if (!args->tags.empty()) request["Tags"] = Tags(args->tags);
    if (!args->custom_key_store.empty()) {
      request["Origin"] = "AWS_CLOUDHSM";
      request["CustomKeyStoreId"] = args->custom_key_store;
    }
    ENVELOPE_ASSIGN_OR_RETURN(json r, c.Kms("CreateKey", request));
    if (c.json_output) {
      PrintJson(Metadata(r));
    } else {
      std::printf("%s\n", Printable(Field(Metadata(r), "KeyId")).c_str());
    }
    return Status::Ok();
  });
}

void AddList(CLI::App* parent, Context* ctx) {
  CLI::App* cmd = parent->add_subcommand(
      "list", "list keys: id, state, current and minimum version, description");
  OnRun(cmd, ctx, [](Context& c) -> Status {
    ENVELOPE_ASSIGN_OR_RETURN(
        json keys, ListAll(c, "ListKeys", {{"Limit", 1000}}, "Keys"));
    json described = json::array();
    std::vector<std::vector<std::string>> rows;
    for (const json& k : keys) {
      const std::string id = Field(k, "KeyId");
      auto r = c.Kms("DescribeKey", {{"KeyId", id}});
      if (!r.ok()) {
        // Deleted since ListKeys: gone, not an error.
        if (r.status().code() == StatusCode::kNotFound) continue;
        // A key whose policy hides it from the caller still exists; show
        // that rather than failing the whole listing.
        const std::string type = kms::KmsErrorType(r.status());
        described.push_back({{"KeyId", id}, {"Error", r.status().message()}});
        rows.push_back({id, type.empty() ? "error" : type, "", "", ""});
        continue;
      }
      const json& m = Metadata(*r);
      described.push_back(m);
      rows.push_back({id, Field(m, "KeyState"), Field(m, "CurrentKeyVersion"),
                      Field(m, "MinKeyVersion"), Field(m, "Description")});
    }
    if (c.json_output) {
      PrintJson(described);
    } else {
      PrintTable({"KeyId", "State", "CurrentKeyVersion", "MinKeyVersion",
                  "Description"},
                 rows);
    }
    return Status::Ok();
  });
}

void AddDescribe(CLI::App* parent, Context* ctx) {
  auto key = std::make_shared<std::string>();
  CLI::App* cmd = parent->add_subcommand("describe", "show a key's metadata");
  AddKeyArgument(cmd, key.get());
  OnRun(cmd, ctx, [key](Context& c) -> Status {
    ENVELOPE_ASSIGN_OR_RETURN(json r, c.Kms("DescribeKey", {{"KeyId", *key}}));
    if (c.json_output) {
      PrintJson(Metadata(r));
    } else {
      PrintMetadata(Metadata(r));
    }
    return Status::Ok();
  });
}

void AddAlias(CLI::App* parent, Context* ctx) {
  CLI::App* alias = parent->add_subcommand("alias", "manage key aliases");
  alias->require_subcommand(1);

  for (const char* verb : {"create", "update"}) {
    struct Args {
      std::string alias;
      std::string key;
    };
    auto args = std::make_shared<Args>();
    const bool create = std::string_view(verb) == "create";
    CLI::App* cmd = alias->add_subcommand(
        verb, create ? "make ALIAS (alias/NAME) point at KEY"
                     : "point an existing ALIAS at another KEY");
    cmd->add_option("ALIAS", args->alias, "alias/NAME")->required();
    AddKeyArgument(cmd, &args->key);
    OnRun(cmd, ctx, [args, create](Context& c) -> Status {
      ENVELOPE_ASSIGN_OR_RETURN(
          json r, c.Kms(create ? "CreateAlias" : "UpdateAlias",
                        {{"AliasName", args->alias},
                         {"TargetKeyId", args->key}}));
      if (c.json_output) PrintJson(r);
      return Status::Ok();
    });
  }

  auto name = std::make_shared<std::string>();
  CLI::App* del = alias->add_subcommand("delete", "delete ALIAS");
  del->add_option("ALIAS", *name, "alias/NAME")->required();
  OnRun(del, ctx, [name](Context& c) -> Status {
    ENVELOPE_ASSIGN_OR_RETURN(json r,
                              c.Kms("DeleteAlias", {{"AliasName", *name}}));
    if (c.json_output) PrintJson(r);
    return Status::Ok();
  });

  auto key = std::make_shared<std::string>();
  CLI::App* list = alias->add_subcommand("list", "list aliases (of KEY)");
  list->add_option("KEY", *key, "only the aliases of this key");
  OnRun(list, ctx, [key](Context& c) -> Status {
    json request = {{"Limit", 1000}};
    if (!key->empty()) request["KeyId"] = *key;
    ENVELOPE_ASSIGN_OR_RETURN(json aliases,
                              ListAll(c, "ListAliases", request, "Aliases"));
    if (c.json_output) {
      PrintJson(aliases);
      return Status::Ok();
    }
    std::vector<std::vector<std::string>> rows;
    for (const json& a : aliases) {
      rows.push_back({Field(a, "AliasName"), Field(a, "TargetKeyId"),
                      DateField(a, "CreationDate")});
    }
    PrintTable({"AliasName", "TargetKeyId", "Created"}, rows);
    return Status::Ok();
  });
}

void AddRotate(CLI::App* parent, Context* ctx) {
  auto key = std::make_shared<std::string>();
  CLI::App* cmd = parent->add_subcommand(
      "rotate", "make a new key version now and print its number");
  AddKeyArgument(cmd, key.get());
  OnRun(cmd, ctx, [key](Context& c) -> Status {
    ENVELOPE_RETURN_IF_ERROR(
        c.Kms("RotateKeyOnDemand", {{"KeyId", *key}}).status());
    // RotateKeyOnDemand does not say which version it made; DescribeKey's
    // CurrentKeyVersion extension does.
    ENVELOPE_ASSIGN_OR_RETURN(json r, c.Kms("DescribeKey", {{"KeyId", *key}}));
    const json& m = Metadata(r);
    if (c.json_output) {
      PrintJson({{"KeyId", m.value("KeyId", *key)},
                 {"CurrentKeyVersion", m.value("CurrentKeyVersion", json())}});
    } else {
      std::printf("%s\n", Printable(Field(m, "CurrentKeyVersion")).c_str());
    }
    return Status::Ok();
  });
}

void AddRotations(CLI::App* parent, Context* ctx) {
  auto key = std::make_shared<std::string>();
  CLI::App* cmd = parent->add_subcommand(
      "rotations", "list a key's rotations (the versions after the first)");
  AddKeyArgument(cmd, key.get());
  OnRun(cmd, ctx, [key](Context& c) -> Status {
    ENVELOPE_ASSIGN_OR_RETURN(
        json rotations,
        ListAll(c, "ListKeyRotations", {{"KeyId", *key}, {"Limit", 1000}},
                "Rotations"));
    if (c.json_output) {
      PrintJson(rotations);
      return Status::Ok();
    }
    std::vector<std::vector<std::string>> rows;
    for (const json& r : rotations) {
      rows.push_back({Field(r, "KeyVersion"), DateField(r, "RotationDate"),
                      Field(r, "RotationType"),
                      BoolField(r, "Retired") ? "yes" : "no"});
    }
    PrintTable({"Version", "Date", "Type", "Retired"}, rows);
    return Status::Ok();
  });
}

void AddDeletion(CLI::App* parent, Context* ctx) {
  auto key = std::make_shared<std::string>();
  auto days = std::make_shared<int>(0);
  CLI::App* schedule = parent->add_subcommand(
      "schedule-deletion",
      "make KEY unusable now and delete it after a waiting period");
  AddKeyArgument(schedule, key.get());
  CLI::Option* days_option = schedule->add_option(
      "--days", *days, "waiting period, 7 to 30 days (default 30)");
  OnRun(schedule, ctx, [key, days, days_option](Context& c) -> Status {
    json request = {{"KeyId", *key}};
    if (days_option->count() > 0) request["PendingWindowInDays"] = *days;
    ENVELOPE_ASSIGN_OR_RETURN(json r, c.Kms("ScheduleKeyDeletion", request));
    if (c.json_output) {
      PrintJson(r);
    } else {
      std::printf("%s will be deleted on %s\n",
                  Printable(Field(r, "KeyId")).c_str(),
                  DateField(r, "DeletionDate").c_str());
    }
    return Status::Ok();
  });

  auto cancel_key = std::make_shared<std::string>();
  CLI::App* cancel = parent->add_subcommand(
      "cancel-deletion", "cancel a scheduled deletion (the key stays disabled)");
  AddKeyArgument(cancel, cancel_key.get());
  OnRun(cancel, ctx, [cancel_key](Context& c) -> Status {
    ENVELOPE_ASSIGN_OR_RETURN(json r,
                              c.Kms("CancelKeyDeletion", {{"KeyId", *cancel_key}}));
    if (c.json_output) {
      PrintJson(r);
    } else {
      // As in AWS KMS the key comes back Disabled; say so, or the next
      // Decrypt's DisabledException would be a surprise.
      std::printf(
          "deletion of %s cancelled; the key is disabled until "
          "'envelopectl key enable' is run\n",
          Printable(Field(r, "KeyId")).c_str());
    }
    return Status::Ok();
  });
}

void AddAutoRotation(CLI::App* parent, Context* ctx) {
  CLI::App* group = parent->add_subcommand(
      "auto-rotation", "automatic rotation: enable, disable, status");
  group->require_subcommand(1);

  auto key = std::make_shared<std::string>();
  auto period = std::make_shared<int>(0);
  CLI::App* enable = group->add_subcommand(
      "enable", "rotate KEY automatically every period");
  AddKeyArgument(enable, key.get());
  CLI::Option* period_option = enable->add_option(
      "--period-days", *period, "90 to 2560 days (default 365)");
  OnRun(enable, ctx, [key, period, period_option](Context& c) -> Status {
    json request = {{"KeyId", *key}};
    if (period_option->count() > 0) request["RotationPeriodInDays"] = *period;
    ENVELOPE_ASSIGN_OR_RETURN(json r, c.Kms("EnableKeyRotation", request));
    if (c.json_output) PrintJson(r);
    return Status::Ok();
  });

  AddSimpleKeyCommand(group, "disable", "stop rotating KEY automatically",
                      "DisableKeyRotation", ctx);

  auto status_key = std::make_shared<std::string>();
  CLI::App* status = group->add_subcommand(
      "status", "whether KEY rotates automatically, and when next");
  AddKeyArgument(status, status_key.get());
  OnRun(status, ctx, [status_key](Context& c) -> Status {
    ENVELOPE_ASSIGN_OR_RETURN(
        json r, c.Kms("GetKeyRotationStatus", {{"KeyId", *status_key}}));
    if (c.json_output) {
      PrintJson(r);
    } else if (BoolField(r, "KeyRotationEnabled")) {
      std::printf("enabled: every %s days, next rotation %s\n",
                  Printable(Field(r, "RotationPeriodInDays")).c_str(),
                  DateField(r, "NextRotationDate").c_str());
    } else {
      std::printf("disabled\n");
    }
    return Status::Ok();
  });
}

void AddPolicy(CLI::App* parent, Context* ctx) {
  CLI::App* group = parent->add_subcommand("policy", "get or replace a key policy");
  group->require_subcommand(1);

  auto key = std::make_shared<std::string>();
  CLI::App* get = group->add_subcommand("get", "print KEY's policy");
  AddKeyArgument(get, key.get());
  OnRun(get, ctx, [key](Context& c) -> Status {
    ENVELOPE_ASSIGN_OR_RETURN(json r, c.Kms("GetKeyPolicy", {{"KeyId", *key}}));
    if (c.json_output) {
      PrintJson(r);
      return Status::Ok();
    }
    std::string policy = Field(r, "Policy");
    if (policy.empty() || policy.back() != '\n') policy += '\n';
    std::fputs(policy.c_str(), stdout);
    return Status::Ok();
  });

  struct Args {
    std::string key;
    std::string file;
    bool bypass = false;
  };
  auto args = std::make_shared<Args>();
  CLI::App* put = group->add_subcommand("put", "replace KEY's policy with FILE");
  AddKeyArgument(put, &args->key);
  put->add_option("FILE", args->file, "policy JSON file, - for stdin")
      ->required();
  put->add_flag("--bypass-lockout-check", args->bypass,
                "accept a policy that would stop you changing it again");
  OnRun(put, ctx, [args](Context& c) -> Status {
    ENVELOPE_ASSIGN_OR_RETURN(std::string text, ReadTextFile(args->file));
    json request = {{"KeyId", args->key}, {"Policy", std::move(text)}};
    if (args->bypass) request["BypassPolicyLockoutSafetyCheck"] = true;
    ENVELOPE_ASSIGN_OR_RETURN(json r, c.Kms("PutKeyPolicy", request));
    if (c.json_output) PrintJson(r);
    return Status::Ok();
  });
}

void AddRetire(CLI::App* parent, Context* ctx) {
  struct Args {
    std::string key;
    int64_t below = 0;
  };
  auto args = std::make_shared<Args>();
  CLI::App* cmd = parent->add_subcommand(
      "retire",
      "destroy the material of every version below VERSION (irreversible: "
      "data under those versions can never be decrypted)");
  AddKeyArgument(cmd, &args->key);
  cmd->add_option("--below", args->below,
                  "the oldest version to keep; versions count from 1")
      ->required()
      ->check(CLI::Range(int64_t{1}, int64_t{UINT32_MAX}));
  OnRun(cmd, ctx, [args](Context& c) -> Status {
    ENVELOPE_ASSIGN_OR_RETURN(
        json r, c.Extension("RetireKeyVersions",
                            {{"KeyId", args->key}, {"BelowVersion", args->below}}));
    if (c.json_output) {
      PrintJson(r);
      return Status::Ok();
    }
    std::string versions;
    auto it = r.find("RetiredVersions");
    if (it != r.end() && it->is_array()) {
      for (const json& v : *it) {
        versions += (versions.empty() ? "" : " ") +
                    v.dump(-1, ' ', false, json::error_handler_t::replace);
      }
    }
    if (versions.empty()) {
      std::printf("no versions retired; the minimum version is %s\n",
                  Printable(Field(r, "MinKeyVersion")).c_str());
    } else {
      std::printf("retired versions: %s\n", Printable(versions).c_str());
    }
    return Status::Ok();
  });
}

}  // namespace

void AddKeyCommands(CLI::App* app, Context* ctx) {
  CLI::App* key = app->add_subcommand("key", "manage KMS keys");
  key->require_subcommand(1);
  AddCreate(key, ctx);
  AddList(key, ctx);
  AddDescribe(key, ctx);
  AddAlias(key, ctx);
  AddRotate(key, ctx);
  AddRotations(key, ctx);
  AddSimpleKeyCommand(key, "enable", "allow KEY to be used", "EnableKey", ctx);
  AddSimpleKeyCommand(key, "disable",
                      "refuse every cryptographic operation with KEY",
                      "DisableKey", ctx);
  AddDeletion(key, ctx);
  AddAutoRotation(key, ctx);
  AddPolicy(key, ctx);
  AddRetire(key, ctx);
}

}  // namespace envelope::envelopectl
