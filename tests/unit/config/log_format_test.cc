// log_format (YAML) / --log-format (flag): the format of the proxy's own logs on stderr.

#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "config/load.h"
#include "tests/unit/config/env_map.h"

namespace sidetrace::config {
namespace {

using testing::envFrom;
using testing::errorOf;

CliOptions parse(std::vector<const char*> args) {
  args.insert(args.begin(), "sidetrace");
  return parseArgs(static_cast<int>(args.size()), args.data());
}

Config fromYaml(const std::string& yaml) {
  Config cfg;
  applyYaml(cfg, yaml, "t.yaml", envFrom({{"FMT", "text"}}));
  return cfg;
}

TEST(LogFormat, DefaultIsJson) {
  EXPECT_EQ(Config{}.log_format, "json");
  CliOptions cli = parse({"--listen", ":1", "--upstream", "h:2"});
  EXPECT_FALSE(cli.log_format);
  EXPECT_EQ(buildConfig(cli, envFrom({})).log_format, "json");
}

TEST(LogFormat, Flag) {
  EXPECT_EQ(parse({"--log-format", "text"}).log_format, "text");
  EXPECT_EQ(parse({"--log-format=json"}).log_format, "json");
  EXPECT_EQ(errorOf([] {
              parse({"--log-format", "xml"});
            }),
            "--log-format: unknown log format 'xml' (expected one of: json, text)");
  EXPECT_EQ(errorOf([] { parse({"--log-format"}); }), "--log-format: missing value");
  EXPECT_NE(usage().find("--log-format"), std::string::npos);
}

TEST(LogFormat, YamlKey) {
  EXPECT_EQ(fromYaml("log_format: text\n").log_format, "text");
  EXPECT_EQ(fromYaml("log_format: json\n").log_format, "json");
  EXPECT_EQ(fromYaml("log_format: ${FMT}\n").log_format, "text");
  EXPECT_EQ(errorOf([] { fromYaml("workers: 1\nlog_format: logfmt\n"); }),
            "t.yaml:2: log_format: unknown log format 'logfmt' (expected one of: json, text)");
  EXPECT_EQ(errorOf([] { fromYaml("log_format: [ json ]\n"); }).rfind("t.yaml:1: log_format: ", 0),
            0u);
}

TEST(LogFormat, FlagOverridesFile) {
  CliOptions cli;
  cli.listen = ":1";
  cli.upstream = "h:2";
  Config cfg;
  applyYaml(cfg, "log_format: text\n", "t.yaml", envFrom({}));
  applyFlags(cfg, cli);
  EXPECT_EQ(cfg.log_format, "text") << "no flag: the file's value stays";
  cli.log_format = "json";
  applyFlags(cfg, cli);
  EXPECT_EQ(cfg.log_format, "json");
}

TEST(LogFormat, ValidateNamesTheKey) {
  Config cfg = buildConfig(parse({"--listen", ":1", "--upstream", "h:2"}), envFrom({}));
  cfg.log_format = "xml";
  EXPECT_EQ(errorOf([&] { validate(cfg); }),
            "log_format: unknown log format 'xml' (expected one of: json, text)");
}

}  // namespace
}  // namespace sidetrace::config
