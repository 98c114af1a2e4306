#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "config/load.h"
#include "tests/unit/config/env_map.h"

namespace sidetrace::config {
namespace {

using testing::errorOf;

CliOptions parse(std::vector<const char*> args) {
  args.insert(args.begin(), "sidetrace");
  return parseArgs(static_cast<int>(args.size()), args.data());
}

TEST(ParseArgs, Empty) {
  CliOptions o = parse({});
  EXPECT_FALSE(o.config_path);
  EXPECT_FALSE(o.validate_only);
  EXPECT_FALSE(o.show_version);
  EXPECT_FALSE(o.show_help);
  EXPECT_TRUE(o.ignore_paths.empty());
}

TEST(ParseArgs, EveryFlagSpaceSeparated) {
  CliOptions o =
      parse({"--config",      "a.yaml",         "--validate",     "--listen",  ":15001",
             "--upstream",    "127.0.0.1:8080", "--service-name", "orders",    "--otlp-endpoint",
             "http://c:4317", "--admin",        "127.0.0.1:9902", "--workers", "4",
             "--ignore-path", "/health",        "--ignore-path",  "/ready",    "--log-level",
             "debug"});
  EXPECT_EQ(o.config_path, "a.yaml");
  EXPECT_TRUE(o.validate_only);
  EXPECT_EQ(o.listen, ":15001");
  EXPECT_EQ(o.upstream, "127.0.0.1:8080");
  EXPECT_EQ(o.service_name, "orders");
  EXPECT_EQ(o.otlp_endpoint, "http://c:4317");
  EXPECT_EQ(o.admin, "127.0.0.1:9902");
  EXPECT_EQ(o.workers, 4u);
  EXPECT_EQ(o.ignore_paths, (std::vector<std::string>{"/health", "/ready"}));
  EXPECT_EQ(o.log_level, "debug");
}

TEST(ParseArgs, TraceContext) {
  EXPECT_FALSE(parse({}).trace_context);
  EXPECT_EQ(parse({"--trace-context", "restart"}).trace_context, TraceContextTrust::Restart);
  EXPECT_EQ(parse({"--trace-context=ignore"}).trace_context, TraceContextTrust::Ignore);
  EXPECT_EQ(parse({"--trace-context", "trust"}).trace_context, TraceContextTrust::Trust);
}

TEST(ParseArgs, EqualsForm) {
  CliOptions o = parse({"--config=b.yaml", "--listen=:1", "--upstream=h:2", "--workers=0",
                        "--admin=off", "--service-name=a=b", "--ignore-path=/x"});
  EXPECT_EQ(o.config_path, "b.yaml");
  EXPECT_EQ(o.listen, ":1");
  EXPECT_EQ(o.upstream, "h:2");
  EXPECT_EQ(o.workers, 0u);
  EXPECT_EQ(o.admin, "off");
  EXPECT_EQ(o.service_name, "a=b");  // only the first '=' splits
  EXPECT_EQ(o.ignore_paths, (std::vector<std::string>{"/x"}));
}

TEST(ParseArgs, PortsFile) {
  EXPECT_FALSE(parse({}).ports_file);
  EXPECT_EQ(parse({"--ports-file", "/tmp/p"}).ports_file, "/tmp/p");
  EXPECT_EQ(parse({"--ports-file=/tmp/q"}).ports_file, "/tmp/q");
  EXPECT_NE(errorOf([] { parse({"--ports-file="}); }).find("--ports-file: empty value"),
            std::string::npos);
}

TEST(ParseArgs, Switches) {
  EXPECT_TRUE(parse({"--version"}).show_version);
  EXPECT_TRUE(parse({"--help"}).show_help);
  EXPECT_TRUE(parse({"-h"}).show_help);
}

TEST(ParseArgs, Errors) {
  EXPECT_EQ(errorOf([] { parse({"--bogus"}); }), "--bogus: unknown flag (see --help)");
  EXPECT_EQ(errorOf([] { parse({"--bogus=1"}); }), "--bogus: unknown flag (see --help)");
  EXPECT_EQ(errorOf([] { parse({"-x"}); }), "-x: unknown flag (see --help)");
  EXPECT_EQ(errorOf([] { parse({"stray"}); }), "unexpected argument 'stray' (see --help)");
  EXPECT_EQ(errorOf([] { parse({"--config"}); }), "--config: missing value");
  EXPECT_EQ(errorOf([] { parse({"--config", "--validate"}); }), "--config: missing value");
  EXPECT_EQ(errorOf([] { parse({"--listen="}); }), "--listen: empty value");
  EXPECT_EQ(errorOf([] {
              parse({"--workers", "many"});
            }),
            "--workers: expected a non-negative integer, got 'many'");
  EXPECT_EQ(errorOf([] {
              parse({"--workers", "-1"});
            }),
            "--workers: expected a non-negative integer, got '-1'");
  EXPECT_EQ(errorOf([] {
              parse({"--log-level", "loud"});
            }),
            "--log-level: unknown log level 'loud' (expected one of: trace, debug, info, warn, "
            "error, off)");
  EXPECT_EQ(errorOf([] {
              parse({"--ignore-path", "health"});
            }),
            "--ignore-path: path must start with '/', got 'health'");
  EXPECT_EQ(errorOf([] {
              parse({"--trace-context", "distrust"});
            }),
            "--trace-context: expected trust, restart or ignore, got 'distrust'");
  EXPECT_EQ(errorOf([] { parse({"--version=yes"}); }), "--version: takes no value");
}

TEST(Usage, ListsEveryFlag) {
  std::string u = usage();
  for (const char* flag : {"--config", "--validate", "--version", "--help", "-h", "--listen",
                           "--upstream", "--service-name", "--otlp-endpoint", "--admin",
                           "--workers", "--ignore-path", "--log-level", "--trace-context"}) {
    EXPECT_NE(u.find(flag), std::string::npos) << flag;
  }
}

}  // namespace
}  // namespace sidetrace::config
