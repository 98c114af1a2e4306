// Passive outlier detection (OutlierDetector, as ConnectionPool uses it): consecutive failures
// eject an endpoint from pick(), for a time that grows with each ejection and is capped;
// successes reset the count; at most max_ejection_percent of the endpoints (but always one) are
// out at once; the state is the cluster's, shared by every worker's pool.

#include <utility>  // before asio (Boost 1.74 with C++20)

#include <gtest/gtest.h>
#include <boost/asio/io_context.hpp>

#include <atomic>
#include <chrono>
#include <map>
#include <memory>
#include <thread>
#include <vector>

#include "upstream/cluster.h"
#include "upstream/connection_pool.h"

namespace sidetrace::upstream {
namespace {

using std::chrono::milliseconds;

class OutlierTest : public ::testing::Test {
 protected:
  void make(size_t endpoints, config::OutlierDetection od) {
    cfg_.name = "c";
    cfg_.outlier_detection = od;
    cluster_.cfg = &cfg_;
    std::vector<Endpoint> eps;
    for (size_t i = 0; i < endpoints; ++i) {
      Endpoint ep;
      ep.host = "10.0.0." + std::to_string(i + 1);
      ep.port = 80;
      eps.push_back(std::move(ep));
    }
    cluster_.endpoints = std::make_shared<EndpointTable>(std::move(eps));
    cluster_.outliers = std::make_shared<OutlierDetector>(od, endpoints);
    pool_ = std::make_unique<ConnectionPool>(io_.get_executor(), cluster_, 1);
  }
  std::map<const Endpoint*, int> picks(int n) {
    std::map<const Endpoint*, int> out;
    for (int i = 0; i < n; ++i) {
      ++out[&pool_->pick()];
    }
    return out;
  }
  const Endpoint& ep(size_t i) { return (*cluster_.endpoints)[i]; }

  boost::asio::io_context io_;
  config::Cluster cfg_;
  ResolvedCluster cluster_;
  std::unique_ptr<ConnectionPool> pool_;
};

TEST_F(OutlierTest, ConsecutiveFailuresEjectUntilTheTimeIsUp) {
  make(3, {.consecutive_5xx = 3,
           .base_ejection_time = milliseconds(200),
           .max_ejection_time = milliseconds(1000),
           .max_ejection_percent = 50});
  EXPECT_FALSE(pool_->reportOutcome(ep(0), true));
  EXPECT_FALSE(pool_->reportOutcome(ep(0), true));
  EXPECT_TRUE(pool_->reportOutcome(ep(0), true)) << "the third failure in a row ejects";
  EXPECT_TRUE(pool_->ejected(ep(0)));
  auto p = picks(60);
  EXPECT_EQ(p[&ep(0)], 0) << "an ejected endpoint gets no picks";
  EXPECT_EQ(p[&ep(1)] + p[&ep(2)], 60);
  std::this_thread::sleep_for(milliseconds(250));
  p = picks(60);
  EXPECT_EQ(p[&ep(0)], 20) << "back in rotation once its time is served";
  EXPECT_FALSE(pool_->ejected(ep(0)));
}

TEST_F(OutlierTest, SuccessResetsTheCount) {
  make(2, {.consecutive_5xx = 2,
           .base_ejection_time = milliseconds(1000),
           .max_ejection_time = milliseconds(1000),
           .max_ejection_percent = 50});
  EXPECT_FALSE(pool_->reportOutcome(ep(0), true));
  EXPECT_FALSE(pool_->reportOutcome(ep(0), false));
  EXPECT_FALSE(pool_->reportOutcome(ep(0), true)) << "not consecutive";
  EXPECT_TRUE(pool_->reportOutcome(ep(0), true));
}

TEST_F(OutlierTest, AtMostMaxEjectionPercentButAlwaysOne) {
  make(4, {.consecutive_5xx = 1,
           .base_ejection_time = milliseconds(10000),
           .max_ejection_time = milliseconds(10000),
           .max_ejection_percent = 10});  // 10% of 4 rounds down to 0: still one may go
  EXPECT_TRUE(pool_->reportOutcome(ep(0), true));
  EXPECT_FALSE(pool_->reportOutcome(ep(1), true)) << "the cap keeps the second in rotation";
  EXPECT_EQ(pool_->ejectedCount(), 1u);
  auto p = picks(30);
  EXPECT_EQ(p[&ep(0)], 0);
  EXPECT_EQ(p[&ep(1)], 10);
}

TEST_F(OutlierTest, EjectionTimeGrowsAndIsCapped) {
  make(2, {.consecutive_5xx = 1,
           .base_ejection_time = milliseconds(1000),
           .max_ejection_time = milliseconds(2500),
           .max_ejection_percent = 50});
  // Ejection k lasts k × base, at most max: checked against the clock around each report.
  auto ejectFor = [&](milliseconds expected) {
    const auto before = std::chrono::steady_clock::now();
    ASSERT_TRUE(pool_->reportOutcome(ep(0), true));
    const auto after = std::chrono::steady_clock::now();
    EXPECT_GE(pool_->ejectedUntil(ep(0)), before + expected);
    EXPECT_LE(pool_->ejectedUntil(ep(0)), after + expected);
  };
  auto release = [&] {  // end the ejection without waiting for it
    ASSERT_TRUE(pool_->ejected(ep(0)));
    pool_->endEjectionForTest(ep(0));
  };
  ejectFor(milliseconds(1000));
  release();
  ejectFor(milliseconds(2000));
  release();
  ejectFor(milliseconds(2500));  // 3 × 1000, capped
}

TEST_F(OutlierTest, OneEndpointClusterStillServes) {
  make(1, {.consecutive_5xx = 1,
           .base_ejection_time = milliseconds(10000),
           .max_ejection_time = milliseconds(10000),
           .max_ejection_percent = 100});
  EXPECT_TRUE(pool_->reportOutcome(ep(0), true));
  EXPECT_EQ(&pool_->pick(), &ep(0)) << "with nothing else left, the ejected one is used";
}

// Without an outlier_detection block only refused connects eject (kDefaultOutlierDetection):
// 5xx responses, resets and timeouts never do; one refused connect does, for 10 s.
TEST_F(OutlierTest, ByDefaultOnlyRefusedConnectsEject) {
  make(3, config::kDefaultOutlierDetection);
  for (int i = 0; i < 10; ++i) {
    EXPECT_FALSE(pool_->reportOutcome(ep(0), true));
  }
  EXPECT_EQ(pool_->ejectedCount(), 0u);
  const auto before = std::chrono::steady_clock::now();
  EXPECT_TRUE(pool_->reportOutcome(ep(1), true, true)) << "one refused connect ejects";
  EXPECT_GE(pool_->ejectedUntil(ep(1)), before + milliseconds(10000));
  auto p = picks(30);
  EXPECT_EQ(p[&ep(1)], 0);
}

// consecutive_connect_failures counts refused connects in a row apart from consecutive_5xx: a
// failure after an accepted connect (or a success) ends the run; refused ones count as failures.
TEST_F(OutlierTest, ConsecutiveConnectFailuresCountApart) {
  make(3, {.consecutive_5xx = 4,
           .consecutive_connect_failures = 2,
           .base_ejection_time = milliseconds(10000),
           .max_ejection_time = milliseconds(10000),
           .max_ejection_percent = 50});
  EXPECT_FALSE(pool_->reportOutcome(ep(0), true, true));
  EXPECT_FALSE(pool_->reportOutcome(ep(0), true)) << "it accepted this one: the run ends";
  EXPECT_FALSE(pool_->reportOutcome(ep(0), true, true));
  EXPECT_TRUE(pool_->reportOutcome(ep(0), true, true)) << "two refused in a row";
  // A success ends both runs.
  EXPECT_FALSE(pool_->reportOutcome(ep(1), true, true));
  EXPECT_FALSE(pool_->reportOutcome(ep(1), false));
  EXPECT_FALSE(pool_->reportOutcome(ep(1), true, true));
  // Refused connects are failures too: with consecutive_connect_failures off, 4 in a row eject.
  make(3, {.consecutive_5xx = 4,
           .consecutive_connect_failures = 0,
           .base_ejection_time = milliseconds(10000),
           .max_ejection_time = milliseconds(10000),
           .max_ejection_percent = 50});
  for (int i = 0; i < 3; ++i) {
    EXPECT_FALSE(pool_->reportOutcome(ep(2), true, true));
  }
  EXPECT_TRUE(pool_->reportOutcome(ep(2), true, true));
}

// A block with neither threshold turns passive ejection off: the cluster gets no detector.
TEST(ResolveClustersOutliers, DefaultOnOffWithBothThresholdsZero) {
  config::Config cfg;
  config::Cluster c;
  c.name = "c";
  c.endpoints = {{"127.0.0.1", 8080}};
  cfg.clusters = {c};
  c.name = "off";
  c.outlier_detection =
      config::OutlierDetection{.consecutive_5xx = 0, .consecutive_connect_failures = 0};
  cfg.clusters.push_back(c);
  auto clusters = resolveClusters(cfg, 1);
  EXPECT_NE(clusters.at(0).outliers, nullptr) << "on by default (refused connects)";
  EXPECT_EQ(clusters.at(1).outliers, nullptr);
}

// Workers share the cluster's outlier state: failures add up across pools, and an ejection
// takes the endpoint out of every pool's rotation.
TEST_F(OutlierTest, WorkersShareFailuresAndEjections) {
  make(2, {.consecutive_5xx = 4,
           .base_ejection_time = milliseconds(10000),
           .max_ejection_time = milliseconds(10000),
           .max_ejection_percent = 50});
  ConnectionPool other(io_.get_executor(), cluster_, 2);
  EXPECT_FALSE(pool_->reportOutcome(ep(0), true));
  EXPECT_FALSE(other.reportOutcome(ep(0), true));
  EXPECT_FALSE(pool_->reportOutcome(ep(0), true));
  EXPECT_TRUE(other.reportOutcome(ep(0), true)) << "the fourth failure in a row, on any worker";
  EXPECT_TRUE(pool_->ejected(ep(0)));
  for (int i = 0; i < 20; ++i) {
    EXPECT_EQ(&other.pick(), &ep(1));
    EXPECT_EQ(&pool_->pick(), &ep(1));
  }
  EXPECT_EQ(cluster_.endpoints->ejections(0), 1u);
}

// Concurrent ejections from many threads never overshoot max_ejection_percent.
TEST(OutlierDetectorTest, ConcurrentEjectionsRespectTheCap) {
  OutlierDetector d({.consecutive_5xx = 1,
                     .base_ejection_time = milliseconds(10000),
                     .max_ejection_time = milliseconds(10000),
                     .max_ejection_percent = 25},
                    16);
  std::atomic<int> ejected{0};
  std::vector<std::thread> threads;
  for (size_t t = 0; t < 8; ++t) {
    threads.emplace_back([&, t] {
      for (size_t i = t; i < 16; i += 8) {
        for (int k = 0; k < 100; ++k) {
          ejected += d.report(i, OutlierDetector::Outcome::Failure, 16) ? 1 : 0;
        }
      }
    });
  }
  for (auto& t : threads) {
    t.join();
  }
  EXPECT_EQ(ejected, 4);  // 25% of 16
  EXPECT_EQ(d.ejectedCount(), 4u);
}

}  // namespace
}  // namespace sidetrace::upstream
