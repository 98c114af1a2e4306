#include "proxy/retry.h"

#include <gtest/gtest.h>

namespace sidetrace::proxy {
namespace {

using config::RetryBudget;
using config::RetryPolicy;
using Error = filters::UpstreamResult::Error;
using std::chrono::milliseconds;

RetryPolicy on(uint32_t bits) {
  RetryPolicy p;
  p.retry_on = bits;
  return p;
}

TEST(RetriableFailureTest, ConditionsCoverTheirFailures) {
  EXPECT_TRUE(retriableFailure(on(RetryPolicy::kConnectFailure), Error::ConnectFailure, false));
  EXPECT_FALSE(retriableFailure(on(RetryPolicy::kConnectFailure), Error::Reset, false));
  EXPECT_TRUE(retriableFailure(on(RetryPolicy::kReset), Error::Reset, false));
  EXPECT_FALSE(retriableFailure(on(RetryPolicy::kReset), Error::ConnectFailure, false));
  for (uint32_t bits : {uint32_t{RetryPolicy::k5xx}, uint32_t{RetryPolicy::kGatewayError}}) {
    EXPECT_TRUE(retriableFailure(on(bits), Error::ConnectFailure, false));
    EXPECT_TRUE(retriableFailure(on(bits), Error::Reset, false));
    EXPECT_TRUE(retriableFailure(on(bits), Error::ProtocolError, false));
    EXPECT_TRUE(retriableFailure(on(bits), Error::Timeout, true));
    EXPECT_FALSE(retriableFailure(on(bits), Error::Timeout, false)) << "the route timeout";
  }
  EXPECT_FALSE(retriableFailure(on(RetryPolicy::kRetriableStatusCodes), Error::Reset, false));
  EXPECT_FALSE(retriableFailure(on(0), Error::ConnectFailure, false));
}

TEST(RetriableResponseTest, StatusesAndGrpcCodes) {
  EXPECT_TRUE(retriableResponse(on(RetryPolicy::k5xx), 500, -1));
  EXPECT_TRUE(retriableResponse(on(RetryPolicy::k5xx), 503, -1));
  EXPECT_FALSE(retriableResponse(on(RetryPolicy::k5xx), 429, -1));
  EXPECT_FALSE(retriableResponse(on(RetryPolicy::kGatewayError), 500, -1));
  EXPECT_TRUE(retriableResponse(on(RetryPolicy::kGatewayError), 504, -1));
  RetryPolicy codes = on(RetryPolicy::kRetriableStatusCodes);
  codes.retriable_status_codes = {409, 429};
  EXPECT_TRUE(retriableResponse(codes, 429, -1));
  EXPECT_FALSE(retriableResponse(codes, 503, -1));
  EXPECT_TRUE(retriableResponse(on(RetryPolicy::kGrpcUnavailable), 200, 14));
  EXPECT_FALSE(retriableResponse(on(RetryPolicy::kGrpcUnavailable), 200, 4));
  EXPECT_TRUE(retriableResponse(on(RetryPolicy::kGrpcResourceExhausted), 200, 8));
  EXPECT_TRUE(retriableResponse(on(RetryPolicy::kGrpcCancelled), 200, 1));
  EXPECT_TRUE(retriableResponse(on(RetryPolicy::kGrpcDeadlineExceeded), 200, 4));
  EXPECT_FALSE(retriableResponse(on(RetryPolicy::k5xx), 200, 14)) << "gRPC codes need gRPC names";
}

TEST(IdempotentMethodTest, Rfc9110) {
  for (const char* m : {"GET", "HEAD", "OPTIONS", "TRACE", "PUT", "DELETE"}) {
    EXPECT_TRUE(idempotentMethod(m)) << m;
  }
  for (const char* m : {"POST", "PATCH", "CONNECT", "get"}) {
    EXPECT_FALSE(idempotentMethod(m)) << m;
  }
}

TEST(RetryBudgetTest, ShareWithAFloor) {
  RetryBudget b;  // 20%, at least 3
  EXPECT_TRUE(retryBudgetAllows(b, 1, 0));
  EXPECT_TRUE(retryBudgetAllows(b, 1, 2));
  EXPECT_FALSE(retryBudgetAllows(b, 1, 3));
  EXPECT_TRUE(retryBudgetAllows(b, 100, 19));
  EXPECT_FALSE(retryBudgetAllows(b, 100, 20));
  RetryBudget none{0, 0};
  EXPECT_FALSE(retryBudgetAllows(none, 1000, 0));
}

TEST(RetryBackOffTest, FullJitterUnderTheCap) {
  RetryPolicy p;
  p.base_interval = milliseconds(10);
  p.max_interval = milliseconds(50);
  for (uint64_t r : {0ull, 1ull, 7ull, 123456789ull, ~0ull}) {
    EXPECT_LE(retryBackOff(p, 1, r), milliseconds(10));
    EXPECT_LE(retryBackOff(p, 2, r), milliseconds(20));
    EXPECT_LE(retryBackOff(p, 3, r), milliseconds(40));
    EXPECT_LE(retryBackOff(p, 9, r), milliseconds(50));
  }
  EXPECT_EQ(retryBackOff(p, 9, 50), milliseconds(50)) << "the cap itself is reachable";
  p.base_interval = p.max_interval = milliseconds(0);
  EXPECT_EQ(retryBackOff(p, 1, 99), milliseconds(0));
}

}  // namespace
}  // namespace sidetrace::proxy
