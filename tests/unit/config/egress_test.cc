// The egress block (YAML egress:, --egress) and the listener and cluster made from it.

#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "config/dump.h"
#include "config/load.h"
#include "tests/unit/config/env_map.h"

namespace sidetrace::config {
namespace {

using testing::envFrom;
using testing::errorOf;

const char* kIngress = R"(listeners:
  - name: ingress
    address: 127.0.0.1:15001
    routes: [ { cluster: app } ]
clusters:
  - { name: app, endpoints: [ "127.0.0.1:8080" ] }
)";

Config build(const std::string& yaml, std::vector<const char*> args = {}) {
  args.insert(args.begin(), "sidetrace");
  CliOptions cli = parseArgs(static_cast<int>(args.size()), args.data());
  Config cfg;
  applyYaml(cfg, yaml, "t.yaml", envFrom({}));
  applyFlags(cfg, cli);
  validate(cfg);
  finishEgress(cfg);
  return cfg;
}

TEST(EgressConfig, NoneByDefault) {
  Config cfg = build(kIngress);
  EXPECT_FALSE(cfg.egress);
  ASSERT_EQ(cfg.listeners.size(), 1u);
  EXPECT_EQ(cfg.clusters.size(), 1u);
}

TEST(EgressConfig, YamlBlockMakesListenerRouteAndCluster) {
  Config cfg = build(std::string(kIngress) + R"(egress:
  address: 127.0.0.1:15002
  allow: [ api.Example.com, "*.internal" ]
  timeout: 5s
  connect_timeout: 250ms
)");
  ASSERT_TRUE(cfg.egress);
  EXPECT_EQ(cfg.egress->address.str(), "127.0.0.1:15002");
  EXPECT_EQ(cfg.egress->allow, (std::vector<std::string>{"api.example.com", "*.internal"}));
  ASSERT_EQ(cfg.listeners.size(), 2u);
  const Listener& l = cfg.listeners[1];
  EXPECT_TRUE(l.egress);
  EXPECT_EQ(l.name, "egress");
  EXPECT_EQ(l.address.str(), "127.0.0.1:15002");
  ASSERT_EQ(l.routes.size(), 1u);
  EXPECT_EQ(l.routes[0].cluster, "egress");
  EXPECT_EQ(l.routes[0].timeout, Duration(5000));
  const Cluster* c = cfg.findCluster("egress");
  ASSERT_NE(c, nullptr);
  EXPECT_TRUE(c->egress);
  EXPECT_TRUE(c->endpoints.empty());
  EXPECT_EQ(c->connect_timeout, Duration(250));
  EXPECT_FALSE(c->outlierDetection().enabled());
  // The dump shows the block, not the listener and cluster made from it.
  const std::string dump = dumpConfigJson(cfg);
  EXPECT_NE(dump.find("\"egress\": {"), std::string::npos) << dump;
  EXPECT_EQ(dump.find("\"name\": \"egress\""), std::string::npos) << dump;
}

TEST(EgressConfig, FlagAloneIsEnough) {
  Config cfg = build("", {"--egress", "127.0.0.1:15002"});
  ASSERT_TRUE(cfg.egress);
  ASSERT_EQ(cfg.listeners.size(), 1u);
  EXPECT_TRUE(cfg.listeners[0].egress);
  EXPECT_EQ(cfg.listeners[0].address.str(), "127.0.0.1:15002");
}

TEST(EgressConfig, FlagOverridesYamlAddress) {
  Config cfg = build(std::string(kIngress) + "egress: { address: 127.0.0.1:1 }\n",
                     {"--egress", "127.0.0.1:2"});
  EXPECT_EQ(cfg.egress->address.str(), "127.0.0.1:2");
}

TEST(EgressConfig, ErrorsNameKeyAndLine) {
  EXPECT_EQ(errorOf([] { build(std::string(kIngress) + "egress: { allow: [ a ] }\n"); }),
            "t.yaml:7: egress.address: missing (e.g. address: 127.0.0.1:15002)");
  EXPECT_EQ(errorOf([] {
              build(std::string(kIngress) +
                    "egress:\n  address: 127.0.0.1:1\n"
                    "  allow: [ \"a*b\" ]\n");
            }),
            "t.yaml:9: egress.allow[0]: bad host pattern 'a*b' (only a leading '*.' wildcard is "
            "supported)");
  EXPECT_EQ(errorOf([] {
              build(std::string(kIngress) +
                    "egress:\n  address: 127.0.0.1:1\n"
                    "  proxy: yes\n");
            }),
            "t.yaml:9: egress.proxy: unknown key (expected one of: address, allow, timeout, "
            "connect_timeout, process)");
  EXPECT_EQ(errorOf([] { build("", {"--egress", "nohost"}); }).rfind("--egress:", 0), 0u);
}

// The process parent rule is on unless turned off; the dump says which.
TEST(EgressConfig, ProcessRuleOnByDefault) {
  Config on = build("", {"--egress", "127.0.0.1:15002"});
  EXPECT_TRUE(on.egress->process);
  Config off = build(std::string(kIngress) + "egress:\n  address: 127.0.0.1:1\n  process: false\n");
  EXPECT_FALSE(off.egress->process);
  EXPECT_NE(dumpConfigJson(off).find("\"process\": false"), std::string::npos);
  EXPECT_EQ(errorOf([] {
              build(std::string(kIngress) + "egress:\n  address: 127.0.0.1:1\n  process: maybe\n");
            }).rfind("t.yaml:9: egress.process:", 0),
            0u);
}

TEST(EgressConfig, NameIsReserved) {
  const std::string yaml = R"(listeners:
  - { name: egress, address: 127.0.0.1:1, routes: [ { cluster: app } ] }
clusters:
  - { name: app, endpoints: [ "127.0.0.1:8080" ] }
egress: { address: 127.0.0.1:2 }
)";
  EXPECT_EQ(errorOf([&] { build(yaml); }),
            "listeners[0].name: 'egress' is reserved for the egress listener (egress:)");
}

}  // namespace
}  // namespace sidetrace::config
