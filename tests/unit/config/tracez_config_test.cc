// admin.tracez.max_bytes: the /tracez view's memory bound; bad values name the key and the line.

#include <gtest/gtest.h>

#include <string>

#include "config/load.h"
#include "tests/unit/config/env_map.h"

namespace sidetrace::config {
namespace {

Config load(const std::string& text) {
  Config cfg;
  applyYaml(cfg, text, "t.yaml", testing::envFrom({}));
  return cfg;
}

std::string loadError(const std::string& text) {
  return testing::errorOf([&] { load(text); });
}

TEST(TracezConfigTest, DefaultIsAFewMebibytes) {
  EXPECT_EQ(Config{}.admin.tracez_max_bytes, 4u * 1024 * 1024);
}

TEST(TracezConfigTest, ReadsMaxBytesAndZeroTurnsItOff) {
  EXPECT_EQ(load("admin: { tracez: { max_bytes: 65536 } }\n").admin.tracez_max_bytes, 65536u);
  EXPECT_EQ(load("admin:\n  tracez:\n    max_bytes: 0\n").admin.tracez_max_bytes, 0u);
}

TEST(TracezConfigTest, BadValuesNameKeyAndLine) {
  EXPECT_EQ(loadError("workers: 1\nadmin: { tracez: { max_bytes: -1 } }\n"),
            "t.yaml:2: admin.tracez.max_bytes: expected a non-negative integer, got '-1'");
  EXPECT_EQ(loadError("admin:\n  tracez:\n    max_bytes: 2000000000\n"),
            "t.yaml:3: admin.tracez.max_bytes: must be at most 1073741824 (1 GiB), got "
            "2000000000");
  EXPECT_EQ(loadError("admin: { tracez: { max_byte: 1 } }\n"),
            "t.yaml:1: admin.tracez.max_byte: unknown key (expected one of: max_bytes)");
  EXPECT_EQ(loadError("admin: { tracez: 5 }\n"), "t.yaml:1: admin.tracez: expected a map, got '5'");
}

}  // namespace
}  // namespace sidetrace::config
