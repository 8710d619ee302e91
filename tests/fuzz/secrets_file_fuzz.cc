// Fuzzes the encrypted secrets file parser (docs/SECRETS.md). Invariants:
// a file that parses serialises back byte for byte (a final newline added);
// Set and Remove leave a file that parses again with the change applied and
// every other line untouched.
#include <algorithm>
#include <string>

#include "tests/fuzz/fuzz_util.h"
#include "tools/secrets_file.h"

namespace envelope::secrets {
namespace {

void Run(std::string_view in) {
  auto file = SecretsFile::Parse(in, "fuzz.secrets");
  if (!file.ok()) return;
  std::string text = file->Serialize();
  std::string want(in);
  if (want.empty() || want.back() != '\n') want += '\n';
  FUZZ_CHECK(text == want);
  FUZZ_CHECK(CheckAppName(file->app()).ok());
  FUZZ_CHECK(CheckKey(file->key()).ok());

  size_t entries = 0;
  for (const Line& l : file->lines()) {
    if (l.kind != Line::Kind::kEntry) continue;
    ++entries;
    FUZZ_CHECK(IsValidName(l.name));
    // A CRLF line keeps its '\r' in Line::text so it is written back as it
    // was; what precedes it is the canonical entry.
    std::string_view text = l.text;
    if (!text.empty() && text.back() == '\r') text.remove_suffix(1);
    FUZZ_CHECK(text == EntryLine(l.name, l.blob));
  }
  FUZZ_CHECK(entries == file->EntryCount());
  (void)file->EnvironmentSizeOfEntries();
  (void)file->Damaged();

  // Replace the first named line's value and add a new variable.
  SecretsFile changed = *file;
  std::string name;
  for (const Line& l : file->lines()) {
    // A damaged line may name a refused name (LD_PRELOAD, ...): Set takes
    // only names CheckName accepts.
    if (!l.name.empty() && CheckName(l.name).ok()) {
      name = l.name;
      break;
    }
  }
  const Bytes blob = {'E', 'K', 1, 2, 3};
  if (!name.empty()) changed.Set(name, blob);
  changed.Set("FUZZ_ADDED", blob);
  auto reparsed = SecretsFile::Parse(changed.Serialize());
  FUZZ_CHECK(reparsed.ok());
  for (const std::string& n : {name, std::string("FUZZ_ADDED")}) {
    if (n.empty()) continue;
    const Line* l = reparsed->Find(n);
    FUZZ_CHECK(l != nullptr && l->blob == blob);
    FUZZ_CHECK(!reparsed->DamageOf(n).has_value());
  }

  if (!name.empty()) {
    SecretsFile removed = *file;
    FUZZ_CHECK(removed.Remove(name) >= 1);
    auto after = SecretsFile::Parse(removed.Serialize());
    FUZZ_CHECK(after.ok());
    FUZZ_CHECK(after->Find(name) == nullptr && !after->DamageOf(name).has_value());
  }
}

}  // namespace
}  // namespace envelope::secrets

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  envelope::secrets::Run(std::string_view(reinterpret_cast<const char*>(data), size));
  return 0;
}
