#include "tools/secrets_exec.h"

#include <cstring>
#include <set>
#include <utility>

namespace envelope::secrets {

namespace {

std::string_view NameOf(std::string_view entry) {
  return entry.substr(0, entry.find('='));
}

}  // namespace

StatusOr<ExecEnvironment> ExecEnvironment::Build(
    const std::vector<NamedValue>& secrets, Options options) {
  // Checked when set or imported and when the file is read; again here,
  // where it matters, whatever the values came from.
  for (const NamedValue& s : secrets) {
    ENVELOPE_RETURN_IF_ERROR(CheckName(s.name));
  }
  ExecEnvironment env;
  ENVELOPE_ASSIGN_OR_RETURN(env.block_, EncodeNulSeparated(secrets));
  env.extra_ = std::move(options.extra);

  std::set<std::string_view> replaced = {kSecretsFdVariable};
  for (const NamedValue& s : secrets) replaced.insert(s.name);
  for (const std::string& e : env.extra_) replaced.insert(NameOf(e));

  if (!options.pristine && options.inherited != nullptr) {
    for (char** e = options.inherited; *e != nullptr; ++e) {
      if (!replaced.contains(NameOf(*e))) env.pointers_.push_back(*e);
    }
  }
  // The block is "NAME=value\0" strings back to back: point at each.
  char* p = reinterpret_cast<char*>(env.block_.data());
  for (const NamedValue& s : secrets) {
    env.pointers_.push_back(p);
    p += s.name.size() + 1 + s.value.size() + 1;
  }
  for (std::string& e : env.extra_) env.pointers_.push_back(e.data());
  env.pointers_.push_back(nullptr);
  return env;
}

StatusOr<crypto::SecretBytes> EncodeNulSeparated(
    const std::vector<NamedValue>& secrets) {
  ENVELOPE_ASSIGN_OR_RETURN(
      crypto::SecretBytes block,
      crypto::SecretBytes::Zeroed(EnvironmentSize(secrets)));
  uint8_t* p = block.data();
  for (const NamedValue& s : secrets) {
    std::memcpy(p, s.name.data(), s.name.size());
    p += s.name.size();
    *p++ = '=';
    if (!s.value.empty()) std::memcpy(p, s.value.data(), s.value.size());
    p += s.value.size();
    *p++ = '\0';
  }
  return block;
}

}  // namespace envelope::secrets
