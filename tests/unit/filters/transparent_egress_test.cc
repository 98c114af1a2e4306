// Transparent egress in the egress filter: a request on a redirected connection goes to the
// original destination, egress.allow takes the Host name or the IP, and loops end in 508.

#include <gtest/gtest.h>

#include <string>

#include "filters/egress_filter.h"
#include "filters/inflight_registry.h"
#include "filters/transparent_egress.h"

namespace sidetrace::filters {
namespace {

class TransparentEgressTest : public ::testing::Test {
 protected:
  void SetUp() override {
    listener_.egress = true;
    s_.listener = &listener_;
    s_.request.method = "GET";
    s_.request.target = "/v1/orders?x=1";
    s_.request.headers.add("host", "API.Example.com:8080");
    s_.original_dst = OriginalDestination{"10.1.2.3", 8080, false};
  }
  FilterStatus run() {
    EgressFilter f(cfg_, registry_);
    return f.onRequest(s_);
  }

  config::EgressConfig cfg_;
  config::Listener listener_;
  InflightRegistry registry_;
  Stream s_;
};

TEST_F(TransparentEgressTest, GoesToTheOriginalDestinationNamedByHost) {
  ASSERT_EQ(run(), FilterStatus::Continue);
  EXPECT_EQ(s_.egress_host, "api.example.com");  // server.address: the name the app used
  EXPECT_EQ(s_.egress_address, "10.1.2.3");      // where it goes: no lookup
  EXPECT_EQ(s_.egress_port, 8080);
  EXPECT_EQ(s_.request.target, "/v1/orders?x=1");  // as the app sent it
  EXPECT_EQ(s_.request.headers.get("host").value_or(""), "API.Example.com:8080");
  EXPECT_EQ(s_.request.headers.get("via").value_or(""), "1.1 " + std::string(viaToken()));
}

TEST_F(TransparentEgressTest, WithoutHostTheAddressNamesIt) {
  s_.request.headers.remove("host");
  s_.request.version_minor = 0;
  ASSERT_EQ(run(), FilterStatus::Continue);
  EXPECT_EQ(s_.egress_host, "10.1.2.3");
  EXPECT_EQ(s_.request.headers.get("via").value_or(""), "1.0 " + std::string(viaToken()));
}

TEST_F(TransparentEgressTest, AllowTakesTheHostNameOrTheAddress) {
  auto fresh = [&](const char* host) {
    s_.reset();
    s_.request.method = "GET";
    s_.request.target = "/";
    s_.request.headers.add("host", host);
  };
  cfg_.allow = {"*.example.com"};
  EXPECT_EQ(run(), FilterStatus::Continue);

  fresh("other.test");
  cfg_.allow = {"10.1.2.3"};
  EXPECT_EQ(run(), FilterStatus::Continue);

  fresh("other.test");
  cfg_.allow = {"*.example.com", "10.9.9.9"};
  ASSERT_EQ(run(), FilterStatus::StopIteration);
  ASSERT_TRUE(s_.local_reply);
  EXPECT_EQ(s_.local_reply->status, 403);
  EXPECT_NE(s_.local_reply->body.find("'other.test' (10.1.2.3)"), std::string::npos)
      << s_.local_reply->body;
  EXPECT_EQ(registry_.denied(), 1u);
}

TEST_F(TransparentEgressTest, RedirectToTheListenerItselfIsALoop) {
  s_.original_dst.is_listener = true;
  ASSERT_EQ(run(), FilterStatus::StopIteration);
  EXPECT_EQ(s_.local_reply->status, 508);
  EXPECT_TRUE(s_.egress_address.empty());
}

TEST_F(TransparentEgressTest, OwnViaTokenIsALoopOthersAreNot) {
  s_.request.headers.add("via", "1.1 squid, 1.1 other-proxy");
  ASSERT_EQ(run(), FilterStatus::Continue);  // another proxy's Via: forwarded, ours added
  EXPECT_EQ(s_.request.headers.count("via"), 2u);

  // The same request back on a second redirected connection: sidetrace's own upstream
  // connection was redirected to it.
  s_.egress_address.clear();
  ASSERT_EQ(run(), FilterStatus::StopIteration);
  EXPECT_EQ(s_.local_reply->status, 508);
  EXPECT_NE(s_.local_reply->body.find("--uid-owner"), std::string::npos);
}

TEST_F(TransparentEgressTest, NotRedirectedOriginFormIsStill400) {
  s_.original_dst = OriginalDestination();
  ASSERT_EQ(run(), FilterStatus::StopIteration);
  EXPECT_EQ(s_.local_reply->status, 400);
}

TEST(TransparentEgress, ViaTokenIsStableAndRandomLooking) {
  const std::string a(viaToken());
  EXPECT_EQ(a, viaToken());
  ASSERT_EQ(a.size(), 26u);
  EXPECT_EQ(a.substr(0, 10), "sidetrace-");
  EXPECT_EQ(a.find_first_not_of("0123456789abcdef", 10), std::string::npos);
}

TEST(TransparentEgress, HostName) {
  EXPECT_EQ(hostName("Example.COM"), "example.com");
  EXPECT_EQ(hostName("example.com:8080"), "example.com");
  EXPECT_EQ(hostName(" 10.0.0.1:80 "), "10.0.0.1");
  EXPECT_EQ(hostName("[FE80::1]:8080"), "fe80::1");
  EXPECT_EQ(hostName("[::1"), "");
  EXPECT_EQ(hostName(""), "");
}

}  // namespace
}  // namespace sidetrace::filters
