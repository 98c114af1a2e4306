// applyDnsAnswer: how a new DNS answer changes a cluster's endpoint table — new addresses
// appended, vanished ones absent, returning ones present again — and that a full table never
// leaves a name without a present endpoint.

#include <utility>  // before asio (Boost 1.74 with C++20)

#include <gtest/gtest.h>
#include <boost/asio/ip/address.hpp>

#include <memory>
#include <string>
#include <vector>

#include "upstream/cluster.h"
#include "upstream/cluster_monitor.h"

namespace sidetrace::upstream {
namespace {

using boost::asio::ip::tcp;

tcp::endpoint at(const std::string& ip) {
  return {boost::asio::ip::make_address(ip), 8080};
}

class DnsAnswerTest : public ::testing::Test {
 protected:
  // Cluster "c" with one configured name, resolved at start to `ips`, with room for `capacity`.
  void make(const std::vector<std::string>& ips, size_t capacity) {
    cfg_.name = "c";
    cfg_.endpoints = {{"backend.test", 8080}};
    cluster_.cfg = &cfg_;
    cluster_.endpoints = std::make_shared<EndpointTable>(capacity, 1);
    for (const auto& ip : ips) {
      Endpoint ep;
      ep.host = "backend.test";
      ep.port = 8080;
      ep.address = at(ip);
      nameEndpoint(ep, cfg_);
      cluster_.endpoints->add(std::move(ep));
    }
  }
  std::vector<size_t> apply(const std::vector<std::string>& ips) {
    std::vector<tcp::endpoint> addrs;
    for (const auto& ip : ips) {
      addrs.push_back(at(ip));
    }
    std::vector<size_t> fresh;
    applyDnsAnswer(cluster_, 0, addrs, fresh, warned_);
    return fresh;
  }
  // "label+" for present endpoints, "label-" for absent ones, in table order.
  std::vector<std::string> state() const {
    std::vector<std::string> out;
    const auto& t = *cluster_.endpoints;
    for (size_t i = 0; i < t.size(); ++i) {
      out.push_back(t[i].label + (t.present(i) ? "+" : "-"));
    }
    return out;
  }

  config::Cluster cfg_;
  ResolvedCluster cluster_;
  bool warned_ = false;
};

TEST_F(DnsAnswerTest, AddsRemovesAndBringsBack) {
  make({"10.0.0.1"}, 8);
  EXPECT_EQ(apply({"10.0.0.1", "10.0.0.2"}), (std::vector<size_t>{1}));
  EXPECT_EQ(state(), (std::vector<std::string>{"10.0.0.1:8080+", "10.0.0.2:8080+"}));
  EXPECT_TRUE(apply({"10.0.0.2"}).empty());
  EXPECT_EQ(state(), (std::vector<std::string>{"10.0.0.1:8080-", "10.0.0.2:8080+"}));
  EXPECT_TRUE(apply({"10.0.0.1", "10.0.0.2"}).empty()) << "a returning address reuses its slot";
  EXPECT_EQ(state(), (std::vector<std::string>{"10.0.0.1:8080+", "10.0.0.2:8080+"}));
  EXPECT_FALSE(warned_);
}

// A full table takes no new address; if none of the answer could be kept, the old addresses
// stay in rotation rather than leaving the name with no endpoint at all.
TEST_F(DnsAnswerTest, FullTableNeverEmptiesAName) {
  make({"10.0.0.1", "10.0.0.2"}, 2);
  EXPECT_TRUE(apply({"10.0.0.3"}).empty());
  EXPECT_TRUE(warned_);
  EXPECT_EQ(state(), (std::vector<std::string>{"10.0.0.1:8080+", "10.0.0.2:8080+"}));
  // Part of the answer is known: the rest of the old addresses may go.
  apply({"10.0.0.2", "10.0.0.3"});
  EXPECT_EQ(state(), (std::vector<std::string>{"10.0.0.1:8080-", "10.0.0.2:8080+"}));
}

}  // namespace
}  // namespace sidetrace::upstream
