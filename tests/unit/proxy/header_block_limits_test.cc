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

TEST(HeaderBlockBudget, LimitsComeFromConfig) {
  config::Limits l;
  l.max_request_headers_bytes = 1234;
  EXPECT_EQ(headerBlockLimits(l).max_bytes, 1234u);
}

}  // namespace
}  // namespace sidetrace::proxy
