// clusters[].lb and endpoint weights: parsing, errors naming the key and line, validation, dump.

#include <gtest/gtest.h>

#include <string>

#include "config/checks.h"
#include "config/dump.h"
#include "config/load.h"
#include "tests/unit/config/env_map.h"

namespace sidetrace::config {
namespace {

using testing::envFrom;
using testing::errorOf;

Config load(const std::string& clusters_text) {
  Config cfg;
  applyYaml(cfg, "clusters:\n" + clusters_text, "t.yaml", envFrom({}));
  return cfg;
}

std::string loadError(const std::string& clusters_text) {
  return errorOf([&] { load(clusters_text); });
}

TEST(ClusterLb, EveryPolicyIsAccepted) {
  for (const char* lb : {"round_robin", "random", "least_request"}) {
    Config cfg = load(std::string("  - { name: c, endpoints: [ \"h:1\" ], lb: ") + lb + " }\n");
    EXPECT_EQ(cfg.clusters[0].lb, lb);
  }
  EXPECT_EQ(load("  - { name: c, endpoints: [ \"h:1\" ] }\n").clusters[0].lb, "round_robin");
}

TEST(ClusterLb, UnknownAndPlannedPoliciesAreErrors) {
  EXPECT_EQ(loadError("  - name: c\n"
                      "    endpoints: [ \"h:1\" ]\n"
                      "    lb: ring_hash\n"),
            "t.yaml:4: clusters[0].lb: load balancer 'ring_hash' is not implemented yet "
            "(expected one of: round_robin, random, least_request)");
  EXPECT_EQ(loadError("  - name: c\n"
                      "    endpoints: [ \"h:1\" ]\n"
                      "    lb: fastest\n"),
            "t.yaml:4: clusters[0].lb: unknown load balancer 'fastest' (expected one of: "
            "round_robin, random, least_request)");
}

TEST(ClusterLb, EndpointsAsStringsOrMapsWithWeights) {
  Config cfg = load(
      "  - name: c\n"
      "    endpoints:\n"
      "      - \"10.0.0.1:80\"\n"
      "      - { address: \"10.0.0.2:81\", weight: 3 }\n"
      "      - address: \"[::1]:82\"\n"
      "      - { address: \"backend:83\", weight: 1000 }\n");
  const auto& e = cfg.clusters[0].endpoints;
  ASSERT_EQ(e.size(), 4u);
  EXPECT_EQ(e[0].str(), "10.0.0.1:80");
  EXPECT_EQ(e[0].weight, 1u);
  EXPECT_EQ(e[1].host, "10.0.0.2");
  EXPECT_EQ(e[1].port, 81);
  EXPECT_EQ(e[1].weight, 3u);
  EXPECT_EQ(e[2].str(), "[::1]:82");
  EXPECT_EQ(e[2].weight, 1u) << "weight defaults to 1";
  EXPECT_EQ(e[3].weight, 1000u);
}

TEST(ClusterLb, EndpointErrorsNameTheKeyAndLine) {
  EXPECT_EQ(loadError("  - name: c\n"
                      "    endpoints:\n"
                      "      - { address: \"h:1\", weight: 0 }\n"),
            "t.yaml:4: clusters[0].endpoints[0].weight: must be between 1 and 1000, got 0");
  EXPECT_EQ(loadError("  - name: c\n"
                      "    endpoints:\n"
                      "      - \"h:1\"\n"
                      "      - { address: \"h:2\", weight: 1001 }\n"),
            "t.yaml:5: clusters[0].endpoints[1].weight: must be between 1 and 1000, got 1001");
  EXPECT_EQ(loadError("  - name: c\n"
                      "    endpoints:\n"
                      "      - { address: \"h:1\", weight: -2 }\n"),
            "t.yaml:4: clusters[0].endpoints[0].weight: expected a non-negative integer, got "
            "'-2'");
  EXPECT_EQ(loadError("  - name: c\n"
                      "    endpoints:\n"
                      "      - { address: \"h:1\", weight: heavy }\n"),
            "t.yaml:4: clusters[0].endpoints[0].weight: expected a non-negative integer, got "
            "'heavy'");
  EXPECT_EQ(loadError("  - name: c\n"
                      "    endpoints:\n"
                      "      - { weight: 2 }\n"),
            "t.yaml:4: clusters[0].endpoints[0].address: missing (e.g. { address: "
            "\"127.0.0.1:8080\", weight: 2 })");
  EXPECT_EQ(loadError("  - name: c\n"
                      "    endpoints:\n"
                      "      - { address: \"h:1\", wieght: 2 }\n"),
            "t.yaml:4: clusters[0].endpoints[0].wieght: unknown key (expected one of: address, "
            "weight)");
  EXPECT_EQ(loadError("  - name: c\n"
                      "    endpoints:\n"
                      "      - { address: nowhere, weight: 2 }\n"),
            "t.yaml:4: clusters[0].endpoints[0].address: bad address 'nowhere': missing ':port' "
            "(expected host:port, [v6]:port or :port)");
  EXPECT_EQ(loadError("  - name: c\n"
                      "    endpoints:\n"
                      "      - [ \"h:1\" ]\n"),
            "t.yaml:4: clusters[0].endpoints[0]: expected \"host:port\" or { address: "
            "\"host:port\", weight: N }, got a list");
}

// validate() checks weights too, for configs not built from YAML.
TEST(ClusterLb, ValidateChecksWeights) {
  Config cfg = load("  - { name: c, endpoints: [ \"h:1\", \"h:2\" ] }\n");
  Listener l;
  l.name = "l";
  l.address = {"127.0.0.1", 80};
  cfg.listeners.push_back(l);
  EXPECT_EQ(errorOf([&] { validate(cfg); }), "<no error>");
  cfg.clusters[0].endpoints[1].weight = 0;
  EXPECT_NE(errorOf([&] { validate(cfg); }).find("clusters[0].endpoints[1].weight: must be"),
            std::string::npos)
      << errorOf([&] { validate(cfg); });
}

TEST(ClusterLb, ZeroConfigUpstreamHasWeightOne) {
  Config cfg;
  CliOptions cli;
  cli.listen = "127.0.0.1:15001";
  cli.upstream = "127.0.0.1:8080";
  applyFlags(cfg, cli);
  ASSERT_EQ(cfg.clusters.size(), 1u);
  ASSERT_EQ(cfg.clusters[0].endpoints.size(), 1u);
  EXPECT_EQ(cfg.clusters[0].endpoints[0].str(), "127.0.0.1:8080");
  EXPECT_EQ(cfg.clusters[0].endpoints[0].weight, 1u);
  EXPECT_EQ(cfg.clusters[0].lb, "round_robin");
}

// The dump writes endpoints back as they can be written in YAML: weight 1 as the plain string.
TEST(ClusterLb, DumpShowsWeightsOnlyWhereSet) {
  Config cfg = load(
      "  - name: c\n"
      "    lb: least_request\n"
      "    endpoints: [ \"h:1\", { address: \"h:2\", weight: 3 } ]\n");
  const std::string dump = dumpConfigJson(cfg);
  EXPECT_NE(dump.find(R"("endpoints": [
        "h:1",
        {
          "address": "h:2",
          "weight": 3
        }
      ],)"),
            std::string::npos)
      << dump;
  EXPECT_NE(dump.find(R"("lb": "least_request")"), std::string::npos) << dump;
}

}  // namespace
}  // namespace sidetrace::config
