// ConnectionPool's load balancing: endpoint weights reach the balancer, and least_request sees
// the active requests that checked-out connections (http1) or tracked streams (http2) count.
// Connections go to a local listener that never accepts: the kernel completes the handshake.

#include <utility>  // before asio (Boost 1.74 with C++20)

#include <gtest/gtest.h>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>

#include <map>
#include <memory>
#include <string>
#include <vector>

#include "upstream/cluster.h"
#include "upstream/connection_pool.h"

namespace sidetrace::upstream {
namespace {

namespace asio = boost::asio;
using asio::ip::tcp;

constexpr uint64_t kSeed = 42;

class PoolLbTest : public ::testing::Test {
 protected:
  // A cluster of endpoints with these weights, all pointing at the local listener.
  // `spare`: room for endpoints added later (addEndpoint), as DNS refresh adds them.
  void makeCluster(const std::string& lb, const std::string& protocol,
                   const std::vector<uint32_t>& weights, size_t spare = 0) {
    cfg_.name = "c";
    cfg_.lb = lb;
    cfg_.protocol = protocol;
    cluster_.cfg = &cfg_;
    std::vector<Endpoint> eps;
    for (uint32_t w : weights) {
      Endpoint ep;
      ep.host = "127.0.0.1";
      ep.port = acceptor_.local_endpoint().port();
      ep.address = acceptor_.local_endpoint();
      ep.weight = w;
      eps.push_back(std::move(ep));
    }
    cluster_.endpoints = std::make_shared<EndpointTable>(eps.size() + spare, 1);
    for (auto& e : eps) {
      cluster_.endpoints->add(std::move(e));
    }
    pool_ = std::make_unique<ConnectionPool>(io_.get_executor(), cluster_, kSeed);
  }

  const Endpoint& ep(size_t i) const { return cluster_.endpoints->at(i); }
  void addEndpoint() {
    Endpoint e = ep(0);
    e.weight = 1;
    ASSERT_TRUE(cluster_.endpoints->add(std::move(e)));
  }

  std::unique_ptr<UpstreamConnection> connect(const Endpoint& e) {
    std::unique_ptr<UpstreamConnection> out;
    ConnectError err = ConnectError::None;
    asio::co_spawn(
        io_, [&]() -> asio::awaitable<void> { out = co_await pool_->connect(e, err); },
        asio::detached);
    io_.restart();
    io_.run();
    EXPECT_EQ(err, ConnectError::None);
    return out;
  }

  std::map<size_t, size_t> countPicks(size_t n) {
    std::map<size_t, size_t> counts;
    for (size_t i = 0; i < n; ++i) {
      ++counts[static_cast<size_t>(&pool_->pick() - cluster_.endpoints->data())];
    }
    return counts;
  }

  asio::io_context io_;
  tcp::acceptor acceptor_{io_, {asio::ip::make_address("127.0.0.1"), 0}};
  config::Cluster cfg_;
  ResolvedCluster cluster_;
  std::unique_ptr<ConnectionPool> pool_;
};

TEST_F(PoolLbTest, Http1ConnectionCountsWhileCheckedOut) {
  makeCluster("least_request", "http1", {1, 1});
  auto conn = connect(ep(0));
  ASSERT_TRUE(conn);
  EXPECT_EQ(pool_->activeRequests(ep(0)), 1u);
  EXPECT_EQ(pool_->activeRequests(ep(1)), 0u);

  pool_->release(std::move(conn));
  EXPECT_EQ(pool_->activeRequests(ep(0)), 0u) << "an idle connection is not a request";
  ASSERT_EQ(pool_->idleCount(), 1u);

  conn = pool_->takeIdle(ep(0));
  ASSERT_TRUE(conn);
  EXPECT_EQ(pool_->activeRequests(ep(0)), 1u);
  conn.reset();  // e.g. an exchange that failed: the connection is dropped, not released
  EXPECT_EQ(pool_->activeRequests(ep(0)), 0u);
}

TEST_F(PoolLbTest, LeastRequestAvoidsTheBusyEndpoint) {
  makeCluster("least_request", "http1", {1, 1});
  auto busy = connect(ep(0));
  ASSERT_TRUE(busy);
  EXPECT_EQ(countPicks(200), (std::map<size_t, size_t>{{1, 200}}));

  pool_->beginRequest(ep(1));
  pool_->beginRequest(ep(1));
  EXPECT_EQ(countPicks(200), (std::map<size_t, size_t>{{0, 200}}));
  pool_->endRequest(ep(1));
  pool_->endRequest(ep(1));
  EXPECT_EQ(pool_->activeRequests(ep(1)), 0u);

  busy.reset();
  auto tie = countPicks(1000);
  EXPECT_GT(tie[0], 400u);
  EXPECT_GT(tie[1], 400u);
}

// An http2 cluster's connection carries many streams: the multiplexing pool counts those.
TEST_F(PoolLbTest, Http2ConnectionsDoNotCountStreamsDo) {
  makeCluster("least_request", "http2", {1, 1});
  auto conn = connect(ep(0));
  ASSERT_TRUE(conn);
  EXPECT_EQ(pool_->activeRequests(ep(0)), 0u);
  {
    ActiveRequest a = pool_->track(ep(1));
    ActiveRequest b = pool_->track(ep(1));
    EXPECT_EQ(pool_->activeRequests(ep(1)), 2u);
    EXPECT_EQ(countPicks(100), (std::map<size_t, size_t>{{0, 100}}));
    ActiveRequest moved = std::move(a);
    EXPECT_EQ(pool_->activeRequests(ep(1)), 2u) << "moving does not count twice";
    b.end();
    b.end();
    EXPECT_EQ(pool_->activeRequests(ep(1)), 1u);
  }
  EXPECT_EQ(pool_->activeRequests(ep(1)), 0u);
}

TEST_F(PoolLbTest, RoundRobinUsesEndpointWeights) {
  makeCluster("round_robin", "http1", {1, 1, 2});
  EXPECT_EQ(countPicks(400), (std::map<size_t, size_t>{{0, 100}, {1, 100}, {2, 200}}));
}

TEST_F(PoolLbTest, RoundRobinEqualWeightsRotate) {
  makeCluster("round_robin", "http1", {1, 1, 1});
  for (size_t i = 0; i < 9; ++i) {
    EXPECT_EQ(&pool_->pick(), &ep(i % 3));
  }
}

TEST_F(PoolLbTest, RandomUsesEndpointWeights) {
  makeCluster("random", "http1", {1, 3});
  auto c = countPicks(40000);
  EXPECT_GT(c[0], 9000u);  // expected 10000
  EXPECT_LT(c[0], 11000u);
}

// DNS refresh marks an endpoint absent: the next pick rebuilds the balancer without it, and its
// connections are not reused — idle ones close, one in use finishes and is not kept.
TEST_F(PoolLbTest, AbsentEndpointGetsNoPicksAndKeepsNoConnections) {
  makeCluster("round_robin", "http1", {1, 1, 1});
  auto idle = connect(ep(1));
  auto in_use = connect(ep(1));
  ASSERT_TRUE(idle && in_use);
  pool_->release(std::move(idle));
  ASSERT_EQ(pool_->idleCount(), 1u);

  cluster_.endpoints->setPresent(1, false);
  EXPECT_EQ(countPicks(300), (std::map<size_t, size_t>{{0, 150}, {2, 150}}));
  EXPECT_EQ(pool_->endpointCount(), 2u);
  EXPECT_EQ(pool_->idleCount(), 0u);
  pool_->release(std::move(in_use));
  EXPECT_EQ(pool_->idleCount(), 0u);
  EXPECT_EQ(pool_->takeIdle(ep(1)), nullptr);

  cluster_.endpoints->setPresent(1, true);  // back in DNS: back in rotation
  EXPECT_EQ(countPicks(300), (std::map<size_t, size_t>{{0, 100}, {1, 100}, {2, 100}}));
}

TEST_F(PoolLbTest, AddedEndpointJoinsTheRotation) {
  makeCluster("round_robin", "http1", {1, 1}, 2);
  EXPECT_EQ(countPicks(100), (std::map<size_t, size_t>{{0, 50}, {1, 50}}));
  ASSERT_NO_FATAL_FAILURE(addEndpoint());
  EXPECT_EQ(countPicks(300), (std::map<size_t, size_t>{{0, 100}, {1, 100}, {2, 100}}));
  ASSERT_NO_FATAL_FAILURE(addEndpoint());
  pool_->pick();
  EXPECT_EQ(pool_->endpointCount(), 4u);
  EXPECT_FALSE(cluster_.endpoints->add(ep(0))) << "the table is full";
}

// least_request over the present endpoints compares active requests by endpoint, not by
// position among the present ones.
TEST_F(PoolLbTest, LeastRequestOverPresentEndpoints) {
  makeCluster("least_request", "http1", {1, 1, 1});
  cluster_.endpoints->setPresent(0, false);
  auto busy = connect(ep(1));
  ASSERT_TRUE(busy);
  EXPECT_EQ(countPicks(200), (std::map<size_t, size_t>{{2, 200}}));
}

TEST_F(PoolLbTest, PicksCountPerEndpoint) {
  makeCluster("round_robin", "http1", {1, 1});
  for (int i = 0; i < 10; ++i) {
    pool_->countPick(pool_->pick());
  }
  EXPECT_EQ(cluster_.endpoints->picks(0), 5u);
  EXPECT_EQ(cluster_.endpoints->picks(1), 5u);
}

TEST(ResolveClustersLb, CarriesEndpointWeights) {
  config::Config cfg;
  config::Cluster c;
  c.name = "c";
  c.endpoints = {{"127.0.0.1", 8080}, {"127.0.0.1", 8081}};
  c.endpoints[1].weight = 7;
  cfg.clusters = {c};
  auto clusters = resolveClusters(cfg, 1);
  ASSERT_EQ(clusters.at(0).endpoints->size(), 2u);
  EXPECT_EQ((*clusters[0].endpoints)[0].weight, 1u);
  EXPECT_EQ((*clusters[0].endpoints)[1].weight, 7u);
}

}  // namespace
}  // namespace sidetrace::upstream
