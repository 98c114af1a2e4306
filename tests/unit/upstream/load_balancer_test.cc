// LoadBalancer: what each clusters[].lb policy picks. Random draws use fixed seeds, so every
// count below is reproducible; the bounds are still wide enough to hold for any decent generator.

#include "upstream/load_balancer.h"

#include <gtest/gtest.h>

#include <cstdint>
#include <map>
#include <string>
#include <vector>

namespace sidetrace::upstream {
namespace {

constexpr uint64_t kSeed = 0x5eed;

std::vector<size_t> countPicks(LoadBalancer& lb, size_t n, const std::vector<uint32_t>& active) {
  std::vector<size_t> counts(lb.size(), 0);
  for (size_t i = 0; i < n; ++i) {
    ++counts.at(lb.pick(active));
  }
  return counts;
}

std::vector<size_t> sequence(LoadBalancer& lb, size_t n) {
  std::vector<size_t> out;
  for (size_t i = 0; i < n; ++i) {
    out.push_back(lb.pick());
  }
  return out;
}

TEST(LbPolicy, FromConfigName) {
  EXPECT_EQ(lbPolicy("round_robin"), LbPolicy::RoundRobin);
  EXPECT_EQ(lbPolicy("random"), LbPolicy::Random);
  EXPECT_EQ(lbPolicy("least_request"), LbPolicy::LeastRequest);
}

TEST(RoundRobin, EqualWeightsRotateStrictly) {
  for (uint32_t w : {1u, 7u}) {
    LoadBalancer lb(LbPolicy::RoundRobin, {w, w, w}, kSeed);
    EXPECT_EQ(sequence(lb, 8), (std::vector<size_t>{0, 1, 2, 0, 1, 2, 0, 1})) << "weight " << w;
  }
}

// nginx's smooth weighted round robin: {5,1,1} gives a a b a c a a, not a a a a a b c.
TEST(RoundRobin, SmoothWeightedSpreadsTheHeavyEndpoint) {
  LoadBalancer lb(LbPolicy::RoundRobin, {5, 1, 1}, kSeed);
  EXPECT_EQ(sequence(lb, 14), (std::vector<size_t>{0, 0, 1, 0, 2, 0, 0, 0, 0, 1, 0, 2, 0, 0}));
}

TEST(RoundRobin, WeightedSharesAreExact) {
  LoadBalancer lb(LbPolicy::RoundRobin, {1, 1, 2}, kSeed);
  EXPECT_EQ(sequence(lb, 4), (std::vector<size_t>{2, 0, 1, 2}));
  EXPECT_EQ(countPicks(lb, 396, {}), (std::vector<size_t>{99, 99, 198}));

  LoadBalancer lb2(LbPolicy::RoundRobin, {1, 3}, kSeed);
  EXPECT_EQ(countPicks(lb2, 1000, {}), (std::vector<size_t>{250, 750}));
}

TEST(Random, WeightedShares) {
  LoadBalancer lb(LbPolicy::Random, {1, 3}, kSeed);
  auto c = countPicks(lb, 100000, {});
  EXPECT_GT(c[0], 23000u);
  EXPECT_LT(c[0], 27000u);
  EXPECT_EQ(c[0] + c[1], 100000u);
}

TEST(Random, EqualWeightsAreUniformAndNotARotation) {
  LoadBalancer lb(LbPolicy::Random, {1, 1, 1, 1}, kSeed);
  auto seq = sequence(lb, 40);
  std::vector<size_t> rotation;
  for (size_t i = 0; i < 40; ++i) {
    rotation.push_back(i % 4);
  }
  EXPECT_NE(seq, rotation);
  auto c = countPicks(lb, 100000, {});
  for (size_t n : c) {
    EXPECT_GT(n, 23000u);
    EXPECT_LT(n, 27000u);
  }
}

TEST(Random, SeedsGiveDifferentSequences) {
  LoadBalancer a(LbPolicy::Random, {1, 1, 1, 1}, 1);
  LoadBalancer b(LbPolicy::Random, {1, 1, 1, 1}, 2);
  LoadBalancer a2(LbPolicy::Random, {1, 1, 1, 1}, 1);
  auto sa = sequence(a, 64);
  EXPECT_NE(sa, sequence(b, 64));
  EXPECT_EQ(sa, sequence(a2, 64));
}

// With two endpoints both are always the two choices: the less loaded one always wins.
TEST(LeastRequest, TwoEndpointsTheLessLoadedAlwaysWins) {
  LoadBalancer lb(LbPolicy::LeastRequest, {1, 1}, kSeed);
  EXPECT_EQ(countPicks(lb, 1000, {3, 1}), (std::vector<size_t>{0, 1000}));
  EXPECT_EQ(countPicks(lb, 1000, {0, 1}), (std::vector<size_t>{1000, 0}));
  auto tie = countPicks(lb, 1000, {2, 2});
  EXPECT_GT(tie[0], 400u) << "ties go either way";
  EXPECT_GT(tie[1], 400u);
}

// The two choices are distinct, so the busiest endpoint never wins, and the idlest wins whenever
// it is drawn (2 of 3 times with equal weights).
TEST(LeastRequest, PowerOfTwoChoices) {
  LoadBalancer lb(LbPolicy::LeastRequest, {1, 1, 1}, kSeed);
  auto c = countPicks(lb, 30000, {0, 5, 9});
  EXPECT_EQ(c[2], 0u);
  EXPECT_GT(c[0], 19000u);  // expected 20000
  EXPECT_LT(c[0], 21000u);
  EXPECT_GT(c[1], 9000u);  // expected 10000
}

// Weighted draws stay distinct: endpoint 0 holds nearly all the weight, yet it is always
// compared with another endpoint, which wins because it is idle.
TEST(LeastRequest, WeightedChoicesAreDistinct) {
  LoadBalancer lb(LbPolicy::LeastRequest, {1000, 1, 1}, kSeed);
  auto c = countPicks(lb, 10000, {9, 0, 0});
  EXPECT_EQ(c[0], 0u);
  EXPECT_GT(c[1], 4000u);
  EXPECT_GT(c[2], 4000u);
}

// Unloaded, least_request follows the weights (a tie goes to the first, weighted draw).
TEST(LeastRequest, UnloadedFollowsWeights) {
  LoadBalancer lb(LbPolicy::LeastRequest, {1, 3}, kSeed);
  auto c = countPicks(lb, 100000, {0, 0});
  EXPECT_GT(c[0], 23000u);
  EXPECT_LT(c[0], 27000u);
}

TEST(AllPolicies, ASingleEndpointAlwaysWins) {
  for (auto p : {LbPolicy::RoundRobin, LbPolicy::Random, LbPolicy::LeastRequest}) {
    for (uint32_t w : {1u, 1000u}) {
      LoadBalancer lb(p, {w}, kSeed);
      EXPECT_EQ(countPicks(lb, 100, {7}), (std::vector<size_t>{100}));
    }
  }
}

// A balancer over ids picks ids, and least_request reads active counts by id.
TEST(LoadBalancerIds, PicksAreIds) {
  LoadBalancer rr(LbPolicy::RoundRobin, {1, 1}, 1, {4, 7});
  EXPECT_EQ(rr.pick(), 4u);
  EXPECT_EQ(rr.pick(), 7u);
  EXPECT_EQ(rr.pick(), 4u);
  std::vector<uint32_t> active(8, 0);
  active[4] = 3;
  LoadBalancer lr(LbPolicy::LeastRequest, {1, 1}, 1, {4, 7});
  for (int i = 0; i < 50; ++i) {
    EXPECT_EQ(lr.pick(active), 7u);
  }
  LoadBalancer weighted(LbPolicy::RoundRobin, {1, 3}, 1, {2, 5});
  std::map<size_t, int> n;
  for (int i = 0; i < 400; ++i) {
    ++n[weighted.pick()];
  }
  EXPECT_EQ(n, (std::map<size_t, int>{{2, 100}, {5, 300}}));
}

}  // namespace
}  // namespace sidetrace::upstream
