#include "proxy/header_block_limits.h"

#include <gtest/gtest.h>

namespace sidetrace::proxy {
namespace {

TEST(HeaderBlockBudget, CountsNameValueAnd32PerField) {
  const HeaderBlockLimits limits{100};
  HeaderBlockBudget b;
  EXPECT_TRUE(b.admit(10, 20, limits));  // 62
  EXPECT_TRUE(b.admit(3, 3, limits));    // 100: at the limit is allowed
  EXPECT_FALSE(b.over());
  EXPECT_FALSE(b.admit(0, 0, limits));  // 132
  EXPECT_TRUE(b.over());
}

TEST(HeaderBlockBudget, StaysOverUntilReset) {
  const HeaderBlockLimits limits{64};
  HeaderBlockBudget b;
  EXPECT_FALSE(b.admit(100, 0, limits));
  EXPECT_FALSE(b.admit(0, 0, limits)) << "a small field after the limit must not be stored";
  b.reset();
  EXPECT_TRUE(b.admit(0, 0, limits));
  EXPECT_FALSE(b.over());
}

TEST(HeaderBlockBudget, CountsFields) {
  const HeaderBlockLimits limits{1 << 20, 3};
  HeaderBlockBudget b;
  EXPECT_TRUE(b.admit(1, 1, limits));
  EXPECT_TRUE(b.admit(1, 1, limits));
  EXPECT_TRUE(b.admit(1, 1, limits));
  EXPECT_FALSE(b.admit(1, 1, limits)) << "the fourth field is over max_count";
  b.reset();
  EXPECT_TRUE(b.admit(1, 1, limits));
}

TEST(HeaderBlockBudget, LimitsComeFromConfig) {
  config::Limits l;
  l.max_request_headers_bytes = 1234;
  l.max_request_headers_count = 42;
  EXPECT_EQ(headerBlockLimits(l).max_bytes, 1234u);
  EXPECT_EQ(headerBlockLimits(l).max_count, 42u);
}

}  // namespace
}  // namespace sidetrace::proxy
