#include "tools/dotenv.h"

#include <gtest/gtest.h>

#include <string>

namespace envelope::secrets {
namespace {

std::string Str(const crypto::SecretBytes& b) {
  return std::string(reinterpret_cast<const char*>(b.data()), b.size());
}

std::vector<NamedValue> MustParse(const std::string& text) {
  auto v = ParseDotenv(AsBytes(text));
  EXPECT_TRUE(v.ok()) << v.status().ToString();
  return v.ok() ? std::move(v).value() : std::vector<NamedValue>();
}

TEST(SecretsDotenvTest, QuotingCommentsAndExport) {
  const auto v = MustParse(
      "# a comment\n"
      "\n"
      "PLAIN=value with spaces   # trailing comment\n"
      "export EXPORTED=x\n"
      "  SPACED = y\n"
      "HASH=a#b\n"
      "SINGLE='lit \"$HOME\" \\n'  # c\n"
      "DOUBLE=\"a\\nb\\t\\\"q\\\" \\\\ \\$ \\` \\z\"\n"
      "EMPTY=\n"
      "EMPTY_QUOTED=''\n"
      "MULTI='line1\n"
      "line2'\n"
      "AFTER=ok\r\n");
  ASSERT_EQ(v.size(), 10u);
  EXPECT_EQ(v[0].name, "PLAIN");
  EXPECT_EQ(Str(v[0].value), "value with spaces");
  EXPECT_EQ(v[0].line, 3);
  EXPECT_EQ(v[1].name, "EXPORTED");
  EXPECT_EQ(Str(v[1].value), "x");
  EXPECT_EQ(v[2].name, "SPACED");
  EXPECT_EQ(Str(v[2].value), "y");
  EXPECT_EQ(Str(v[3].value), "a#b");
  EXPECT_EQ(Str(v[4].value), "lit \"$HOME\" \\n");
  EXPECT_EQ(Str(v[5].value), "a\nb\t\"q\" \\ $ ` \\z");
  EXPECT_EQ(Str(v[6].value), "");
  EXPECT_EQ(Str(v[7].value), "");
  EXPECT_EQ(Str(v[8].value), "line1\nline2");
  EXPECT_EQ(v[8].line, 11);
  EXPECT_EQ(v[9].name, "AFTER");
  EXPECT_EQ(Str(v[9].value), "ok");
  EXPECT_EQ(v[9].line, 13);
  for (const NamedValue& n : v) {
    if (!n.value.empty()) {
      EXPECT_TRUE(n.value.in_secure_heap()) << n.name;
    }
  }
}

TEST(SecretsDotenvTest, ErrorsNameTheLine) {
  struct Case {
    const char* text;
    const char* want;
  };
  for (const Case& c : {
           Case{"A=1\n1BAD=x\n", "in.env:2: invalid variable name"},
           Case{"A=1\nB-C=x\n", "in.env:2: invalid variable name"},
           Case{"A=1\n\nnovalue\n", "in.env:3: expected NAME=VALUE"},
           Case{"A='open\n", "in.env:1: unterminated single quote"},
           Case{"X=1\nA=\"open\n", "in.env:2: unterminated double quote"},
           Case{"A='x' trailing\n", "in.env:1: unexpected text"},
           Case{"A=1\nB=2\nA=3\n", "in.env:3: A is already assigned on line 1"},
       }) {
    auto v = ParseDotenv(AsBytes(std::string(c.text)), "in.env");
    ASSERT_FALSE(v.ok()) << c.text;
    EXPECT_EQ(v.status().message().rfind(c.want, 0), 0u)
        << v.status().message();
  }
  auto nul = ParseDotenv(AsBytes(std::string("A=\"x\0y\"\n", 8)), "in.env");
  ASSERT_FALSE(nul.ok());
  EXPECT_NE(nul.status().message().find("NUL"), std::string::npos);
  const std::string big = "A=" + std::string(kMaxValueSizeInBytes + 1, 'x');
  auto too_big = ParseDotenv(AsBytes(big), "in.env");
  ASSERT_FALSE(too_big.ok());
  EXPECT_NE(too_big.status().message().find("in.env:1: A:"), std::string::npos)
      << too_big.status().message();
}

TEST(SecretsDotenvTest, FormatKnownAnswerAndRoundTrip) {
  std::vector<NamedValue> values;
  auto add = [&values](const char* name, std::string value) {
    auto b = crypto::SecretBytes::CopyOf(AsBytes(value));
    ASSERT_TRUE(b.ok());
    values.push_back({name, std::move(b).value(), 0});
  };
  add("SIMPLE", "p@ss word #1 $HOME \"q\"");
  add("NEWLINE", "a\nb");
  add("QUOTE", "it's \\ $x `y` \"z\"\t\r");
  add("EMPTY", "");
  auto text = FormatDotenv(values, "exported");
  ASSERT_TRUE(text.ok());
  EXPECT_TRUE(text->in_secure_heap());
  EXPECT_EQ(Str(*text),
            "# exported\n"
            "SIMPLE='p@ss word #1 $HOME \"q\"'\n"
            "NEWLINE=\"a\\nb\"\n"
            "QUOTE=\"it's \\\\ \\$x \\`y\\` \\\"z\\\"\\t\\r\"\n"
            "EMPTY=''\n");
  const auto back = MustParse(Str(*text));
  ASSERT_EQ(back.size(), values.size());
  for (size_t i = 0; i < values.size(); ++i) {
    EXPECT_EQ(back[i].name, values[i].name);
    EXPECT_EQ(Str(back[i].value), Str(values[i].value)) << values[i].name;
  }
}

TEST(SecretsDotenvTest, EveryByteButNulRoundTrips) {
  std::string all;
  for (int b = 1; b < 256; ++b) all.push_back(static_cast<char>(b));
  std::vector<NamedValue> values;
  auto v = crypto::SecretBytes::CopyOf(AsBytes(all));
  ASSERT_TRUE(v.ok());
  values.push_back({"ALL", std::move(v).value(), 0});
  auto text = FormatDotenv(values, "");
  ASSERT_TRUE(text.ok());
  const auto back = MustParse(Str(*text));
  ASSERT_EQ(back.size(), 1u);
  EXPECT_EQ(Str(back[0].value), all);
}

}  // namespace
}  // namespace envelope::secrets
