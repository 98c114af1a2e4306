#include "proxy/retry.h"

#include <gtest/gtest.h>

#include <memory>
#include <tuple>

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
  // A connect timeout is a connect failure that took connect_timeout: nothing was sent.
  EXPECT_TRUE(retriableFailure(on(RetryPolicy::kConnectFailure), Error::ConnectTimeout, false));
  EXPECT_FALSE(retriableFailure(on(RetryPolicy::kReset), Error::ConnectTimeout, false));
  for (uint32_t bits : {uint32_t{RetryPolicy::k5xx}, uint32_t{RetryPolicy::kGatewayError}}) {
    EXPECT_TRUE(retriableFailure(on(bits), Error::ConnectFailure, false));
    EXPECT_TRUE(retriableFailure(on(bits), Error::Reset, false));
    EXPECT_TRUE(retriableFailure(on(bits), Error::ProtocolError, false));
    EXPECT_TRUE(retriableFailure(on(bits), Error::Timeout, true));
    EXPECT_TRUE(retriableFailure(on(bits), Error::ConnectTimeout, false));
    EXPECT_FALSE(retriableFailure(on(bits), Error::Timeout, false)) << "the route timeout";
  }
  EXPECT_FALSE(retriableFailure(on(RetryPolicy::kRetriableStatusCodes), Error::Reset, false));
  EXPECT_FALSE(retriableFailure(on(0), Error::ConnectFailure, false));
}

TEST(JudgeAttemptTest, OnlyWhatTheEndpointDidCounts) {
  auto judged = [](AttemptEnd a) {
    const AttemptVerdict v = judgeAttempt(a);
    return std::tuple(v.report, v.failed, v.may_retry);
  };
  using T = std::tuple<bool, bool, bool>;
  EXPECT_EQ(judged({Error::None, 200}), T(true, false, true));
  EXPECT_EQ(judged({Error::None, 503}), T(true, true, true));
  EXPECT_EQ(judged({Error::Reset}), T(true, true, true));
  EXPECT_EQ(judged({Error::ConnectFailure}), T(true, true, true));
  EXPECT_EQ(judged({Error::Timeout, 0, true}), T(true, true, true)) << "per-try timeout";
  EXPECT_EQ(judged({Error::Timeout, 0, true, true}), T(true, true, false))
      << "per-try timeout as the route's time ran out";
  EXPECT_EQ(judged({Error::Timeout, 0, false, true}), T(false, false, false)) << "route timeout";
  EXPECT_EQ(judged({Error::Overflow}), T(false, false, false)) << "breakers refused it";
  // The client reset (or broke its request) first: whatever the attempt saw is not the endpoint's.
  EXPECT_EQ(judged({Error::Reset, 0, false, false, true}), T(false, false, false));
  EXPECT_EQ(judged({Error::None, 503, false, false, true}), T(false, false, false));
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

// A retry after a refused connect (admit's `free`) goes at once and outside the budget, and is
// not counted as a retry in flight against the others; other retries wait and are budgeted.
TEST(RetryAttemptsTest, RetryAfterARefusedConnectIsFree) {
  config::Cluster cfg;
  cfg.retry_budget = {0, 0};  // no retry in flight allowed at all
  upstream::ResolvedCluster cluster;
  cluster.cfg = &cfg;
  cluster.breakers = std::make_shared<upstream::CircuitBreakers>(cfg.circuit_breakers);
  WorkerStats stats(1, 1, 1);
  ClusterLoad load;
  RetryPolicy p = on(RetryPolicy::kConnectFailure);
  p.num_retries = 2;
  p.base_interval = milliseconds(1000);
  p.max_interval = milliseconds(1000);
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(60);
  RetryAttempts a(load, cluster, stats, 0);
  EXPECT_FALSE(a.admit(p, 999, deadline)) << "the empty budget refuses an ordinary retry";
  auto wait = a.admit(p, 999, deadline, true);
  ASSERT_TRUE(wait);
  EXPECT_EQ(wait->count(), 0) << "no back-off";
  a.begin(true);
  EXPECT_EQ(load.retrying, 0u) << "not a retry in flight for the budget";
  ASSERT_TRUE(a.admit(p, 999, deadline, true));
  a.begin(true);
  EXPECT_FALSE(a.admit(p, 999, deadline, true)) << "num_retries still bounds it";
  EXPECT_EQ(a.count(), 2u);

  cfg.retry_budget = {100, 1};
  RetryAttempts b(load, cluster, stats, 0);
  wait = b.admit(p, 999, deadline);
  ASSERT_TRUE(wait);
  EXPECT_EQ(wait->count(), 999 % 1001);
  b.begin();
  EXPECT_EQ(load.retrying, 1u);
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
