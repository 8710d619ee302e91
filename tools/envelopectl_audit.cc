// envelopectl audit ...: the key service's tamper-evident audit log, through
// the TailAudit and VerifyAudit extensions (root or the daemon's own user).
#include <cstdint>
#include <memory>
#include <string>

#include "tools/envelopectl.h"

namespace envelope::envelopectl {

void AddAuditCommands(CLI::App* app, Context* ctx) {
  CLI::App* audit = app->add_subcommand("audit", "read and verify the audit log");
  audit->require_subcommand(1);

  auto lines = std::make_shared<int64_t>(20);
  CLI::App* tail = audit->add_subcommand(
      "tail", "print the last records (one JSON object per line)");
  tail->add_option("-n,--lines", *lines, "how many records (default 20)")
      ->check(CLI::Range(int64_t{1}, int64_t{10000}));
  OnRun(tail, ctx, [lines](Context& c) -> Status {
    ENVELOPE_ASSIGN_OR_RETURN(json r,
                              c.Extension("TailAudit", {{"Lines", *lines}}));
    auto it = r.find("Records");
    if (it == r.end() || !it->is_array()) return Status::Ok();
    for (const json& record : *it) {
      // Records are the raw log lines; anything else is shown as JSON.
      std::printf("%s\n", Printable(record.is_string()
                                        ? record.get<std::string>()
                                        : record.dump(-1, ' ', false,
                                                      json::error_handler_t::
                                                          replace))
                              .c_str());
    }
    return Status::Ok();
  });

  CLI::App* verify = audit->add_subcommand(
      "verify", "check the hash chain of the whole log; exit 1 if broken");
  OnRun(verify, ctx, [](Context& c) -> Status {
    ENVELOPE_ASSIGN_OR_RETURN(json r, c.Extension("VerifyAudit", json::object()));
    const bool ok = BoolField(r, "Ok");
    if (c.json_output) {
      PrintJson(r);
    } else {
      if (ok) {
        std::printf("audit log OK: %s records\n",
                    Printable(Field(r, "Lines")).c_str());
      } else {
        std::printf("audit log FAILED at line %s: %s\n",
                    Printable(Field(r, "BadLine")).c_str(),
                    Printable(Field(r, "Reason")).c_str());
      }
      // Facts an auditor must see even when the chain is intact, such as
      // a loss of records the operator accepted at start-up.
      auto notes = r.find("Notes");
      if (notes != r.end() && notes->is_array()) {
        for (const json& note : *notes) {
          if (note.is_string()) {
            std::printf("note: %s\n", Printable(note.get<std::string>()).c_str());
          }
        }
      }
    }
    c.exit_code = ok ? 0 : 1;
    return Status::Ok();
  });
}

}  // namespace envelope::envelopectl
