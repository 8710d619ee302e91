// Fuzzes the plaintext dotenv parser (envelopectl secrets import).
// Invariant: whatever ParseDotenv accepts, FormatDotenv writes and
// ParseDotenv reads back as the same names and value bytes, in order.
#include <algorithm>

#include "tests/fuzz/fuzz_util.h"
#include "tools/dotenv.h"

namespace envelope::secrets {
namespace {

void Run(ByteView in) {
  auto values = ParseDotenv(in, "fuzz.env");
  if (!values.ok()) {
    FUZZ_CHECK(values.status().code() == StatusCode::kInvalidArgument);
    return;
  }
  for (const NamedValue& v : *values) {
    FUZZ_CHECK(IsValidName(v.name));
    FUZZ_CHECK(CheckValue(v.name, v.value.view()).ok());
  }
  (void)EnvironmentSize(*values);
  auto text = FormatDotenv(*values, "fuzz");
  FUZZ_CHECK(text.ok());
  auto again = ParseDotenv(text->view());
  FUZZ_CHECK(again.ok());
  FUZZ_CHECK(again->size() == values->size());
  for (size_t i = 0; i < values->size(); ++i) {
    const NamedValue& a = (*values)[i];
    const NamedValue& b = (*again)[i];
    FUZZ_CHECK(a.name == b.name);
    FUZZ_CHECK(a.value.size() == b.value.size());
    FUZZ_CHECK(std::equal(a.value.view().begin(), a.value.view().end(),
                          b.value.view().begin()));
  }
}

}  // namespace
}  // namespace envelope::secrets

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  envelope::secrets::Run(envelope::ByteView(data, size));
  return 0;
}
