#include "tools/secrets_exec.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

namespace envelope::secrets {
namespace {

std::vector<NamedValue> Values(
    std::initializer_list<std::pair<const char*, std::string>> pairs) {
  std::vector<NamedValue> out;
  for (const auto& [name, value] : pairs) {
    auto b = crypto::SecretBytes::CopyOf(AsBytes(value));
    EXPECT_TRUE(b.ok());
    out.push_back({name, std::move(b).value(), 0});
  }
  return out;
}

std::vector<std::string> Strings(char** envp) {
  std::vector<std::string> out;
  for (char** e = envp; *e != nullptr; ++e) out.emplace_back(*e);
  return out;
}

TEST(SecretsExecTest, NulSeparatedKnownAnswer) {
  auto block =
      EncodeNulSeparated(Values({{"A", "1"}, {"BB", "x\ny"}, {"E", ""}}));
  ASSERT_TRUE(block.ok());
  EXPECT_TRUE(block->in_secure_heap());
  EXPECT_EQ(
      std::string(reinterpret_cast<const char*>(block->data()), block->size()),
      std::string("A=1\0BB=x\ny\0E=\0", 14));
}

TEST(SecretsExecTest, InheritedEnvironmentWithSecretsWinning) {
  char a[] = "PATH=/usr/bin", b[] = "DB=old", c[] = "ENVELOPE_SECRETS_FD=9",
       d[] = "HOME=/root";
  char* inherited[] = {a, b, c, d, nullptr};
  const auto values = Values({{"DB", "new"}, {"TOKEN", "t"}});
  ExecEnvironment::Options options;
  options.inherited = inherited;
  auto env = ExecEnvironment::Build(values, options);
  ASSERT_TRUE(env.ok());
  EXPECT_EQ(Strings(env->envp()),
            (std::vector<std::string>{"PATH=/usr/bin", "HOME=/root", "DB=new",
                                      "TOKEN=t"}));
  EXPECT_EQ(env->size(), 4u);
}

TEST(SecretsExecTest, ProgramControlNamesNeverReachTheEnvironment) {
  for (const char* name : {"LD_PRELOAD", "BASH_ENV", "PATH"}) {
    auto env = ExecEnvironment::Build(Values({{"DB", "v"}, {name, "/tmp/x"}}),
                                      ExecEnvironment::Options());
    EXPECT_EQ(env.status().code(), StatusCode::kInvalidArgument) << name;
  }
}

TEST(SecretsExecTest, PristineHasOnlySecretsAndExtra) {
  char a[] = "PATH=/usr/bin";
  char* inherited[] = {a, nullptr};
  const auto values = Values({{"DB", "v"}});
  ExecEnvironment::Options options;
  options.inherited = inherited;
  options.pristine = true;
  options.extra = {"ENVELOPE_SECRETS_FD=3"};
  auto env = ExecEnvironment::Build(values, std::move(options));
  ASSERT_TRUE(env.ok());
  // Moving the environment keeps its pointers valid.
  ExecEnvironment moved = std::move(env).value();
  EXPECT_EQ(Strings(moved.envp()),
            (std::vector<std::string>{"DB=v", "ENVELOPE_SECRETS_FD=3"}));
}

TEST(SecretsExecTest, NoSecretsAtAll) {
  ExecEnvironment::Options options;
  options.pristine = true;
  auto env = ExecEnvironment::Build({}, options);
  ASSERT_TRUE(env.ok());
  EXPECT_EQ(env->size(), 0u);
  EXPECT_EQ(env->envp()[0], nullptr);
}

}  // namespace
}  // namespace envelope::secrets
