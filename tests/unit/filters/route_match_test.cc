#include "filters/route_match.h"

#include "config/checks.h"

#include <gtest/gtest.h>

#include <memory>
#include <string>
#include <utility>
#include <vector>

namespace sidetrace::filters {
namespace {

config::Regex makeRegex(const std::string& src) {
  return config::detail::compileRegex(src);
}

RequestHead request(std::string method, std::string target, std::string host = "example.com",
                    std::vector<Header> extra = {}) {
  RequestHead r;
  r.method = std::move(method);
  r.target = std::move(target);
  if (!host.empty()) {
    r.headers.add("Host", std::move(host));
  }
  for (auto& h : extra) {
    r.headers.add(std::move(h.name), std::move(h.value));
  }
  return r;
}

config::Route route(std::string name, config::RouteMatch m) {
  config::Route r;
  r.name = std::move(name);
  r.match = std::move(m);
  r.cluster = "c";
  return r;
}

config::RouteMatch pathExact(std::string p) {
  config::RouteMatch m;
  m.path_kind = config::RouteMatch::PathKind::Exact;
  m.path = std::move(p);
  return m;
}

config::RouteMatch pathPrefix(std::string p) {
  config::RouteMatch m;
  m.path_kind = config::RouteMatch::PathKind::Prefix;
  m.path = std::move(p);
  return m;
}

config::HeaderMatch header(std::string name, config::HeaderMatch::Kind kind,
                           std::string value = {}) {
  config::HeaderMatch h;
  h.name = std::move(name);
  h.kind = kind;
  if (kind == config::HeaderMatch::Kind::Regex) {
    h.regex = makeRegex(value);
  } else {
    h.value = std::move(value);
  }
  return h;
}

// ---- host ----

TEST(HostMatchTest, EmptyPatternMatchesAnything) {
  EXPECT_TRUE(hostMatches("", "example.com"));
  EXPECT_TRUE(hostMatches("", ""));
}

TEST(HostMatchTest, ExactIsCaseInsensitive) {
  EXPECT_TRUE(hostMatches("example.com", "example.com"));
  EXPECT_TRUE(hostMatches("example.com", "EXAMPLE.Com"));
  EXPECT_TRUE(hostMatches("Example.COM", "example.com"));
  EXPECT_FALSE(hostMatches("example.com", "example.org"));
  EXPECT_FALSE(hostMatches("example.com", "api.example.com"));
  EXPECT_FALSE(hostMatches("example.com", "example.co"));
  EXPECT_FALSE(hostMatches("example.com", ""));
}

TEST(HostMatchTest, WildcardSuffix) {
  EXPECT_TRUE(hostMatches("*.example.com", "api.example.com"));
  EXPECT_TRUE(hostMatches("*.example.com", "a.b.example.com"));
  EXPECT_TRUE(hostMatches("*.example.com", "API.EXAMPLE.COM"));
  EXPECT_TRUE(hostMatches("*.Example.Com", "api.example.com"));
}

TEST(HostMatchTest, WildcardDoesNotMatchBareDomainOrLookalikes) {
  EXPECT_FALSE(hostMatches("*.example.com", "example.com"));
  EXPECT_FALSE(hostMatches("*.example.com", ".example.com"));  // empty label
  EXPECT_FALSE(hostMatches("*.example.com", "badexample.com"));
  EXPECT_FALSE(hostMatches("*.example.com", "example.com.evil.org"));
  EXPECT_FALSE(hostMatches("*.example.com", ""));
}

TEST(HostMatchTest, RequestPortIsIgnored) {
  config::RouteMatch m;
  m.host = "example.com";
  EXPECT_TRUE(routeMatches(m, request("GET", "/", "example.com:8080")));
  EXPECT_TRUE(routeMatches(m, request("GET", "/", "EXAMPLE.com:80")));
  m.host = "*.example.com";
  EXPECT_TRUE(routeMatches(m, request("GET", "/", "api.example.com:443")));
  EXPECT_FALSE(routeMatches(m, request("GET", "/", "example.com:443")));
}

TEST(HostMatchTest, MissingHostHeaderFailsHostRule) {
  config::RouteMatch m;
  m.host = "example.com";
  EXPECT_FALSE(routeMatches(m, request("GET", "/", "")));
  m.host = "";
  EXPECT_TRUE(routeMatches(m, request("GET", "/", "")));
}

// ---- path ----

TEST(PathMatchTest, AnyMatchesEveryPath) {
  config::RouteMatch m;
  EXPECT_TRUE(routeMatches(m, request("GET", "/")));
  EXPECT_TRUE(routeMatches(m, request("DELETE", "/x/y?z=1")));
}

TEST(PathMatchTest, ExactIgnoresQueryAndIsCaseSensitive) {
  auto m = pathExact("/ping");
  EXPECT_TRUE(routeMatches(m, request("GET", "/ping")));
  EXPECT_TRUE(routeMatches(m, request("GET", "/ping?x=1")));
  EXPECT_FALSE(routeMatches(m, request("GET", "/ping/")));
  EXPECT_FALSE(routeMatches(m, request("GET", "/pingx")));
  EXPECT_FALSE(routeMatches(m, request("GET", "/PING")));
  EXPECT_FALSE(routeMatches(m, request("GET", "/pin")));
}

TEST(PathMatchTest, Prefix) {
  auto m = pathPrefix("/api/orders");
  EXPECT_TRUE(routeMatches(m, request("GET", "/api/orders")));
  EXPECT_TRUE(routeMatches(m, request("GET", "/api/orders/42")));
  EXPECT_TRUE(routeMatches(m, request("GET", "/api/ordersX")));  // plain string prefix
  EXPECT_TRUE(routeMatches(m, request("GET", "/api/orders?q=1")));
  EXPECT_FALSE(routeMatches(m, request("GET", "/api/order")));
  EXPECT_FALSE(routeMatches(m, request("GET", "/v2/api/orders")));
  // The query is not part of the path.
  EXPECT_FALSE(routeMatches(pathPrefix("/a?b"), request("GET", "/a?b")));
}

TEST(PathMatchTest, RegexUsesSearchOnPathOnly) {
  config::RouteMatch m;
  m.path_kind = config::RouteMatch::PathKind::Regex;
  m.path_regex = makeRegex("^/users/[0-9]+$");
  EXPECT_TRUE(routeMatches(m, request("GET", "/users/42")));
  EXPECT_TRUE(routeMatches(m, request("GET", "/users/42?x=abc")));
  EXPECT_FALSE(routeMatches(m, request("GET", "/users/abc")));
  EXPECT_FALSE(routeMatches(m, request("GET", "/users/42/x")));

  m.path_regex = makeRegex("metrics");  // unanchored: search semantics
  EXPECT_TRUE(routeMatches(m, request("GET", "/internal/metrics/x")));
  EXPECT_FALSE(routeMatches(m, request("GET", "/health?metrics")));
}

// ---- method ----

TEST(MethodMatchTest, ExactMethod) {
  auto m = pathPrefix("/");
  m.method = "POST";
  EXPECT_TRUE(routeMatches(m, request("POST", "/a")));
  EXPECT_FALSE(routeMatches(m, request("GET", "/a")));
  EXPECT_FALSE(routeMatches(m, request("PUT", "/a")));
  m.method = "";
  EXPECT_TRUE(routeMatches(m, request("PUT", "/a")));
}

// ---- headers ----

TEST(HeaderMatchTest, Present) {
  config::RouteMatch m;
  m.headers.push_back(header("x-canary", config::HeaderMatch::Kind::Present));
  EXPECT_TRUE(routeMatches(m, request("GET", "/", "h", {{"X-Canary", "anything"}})));
  EXPECT_TRUE(routeMatches(m, request("GET", "/", "h", {{"x-canary", ""}})));
  EXPECT_FALSE(routeMatches(m, request("GET", "/", "h", {{"x-canary-2", "1"}})));
  EXPECT_FALSE(routeMatches(m, request("GET", "/")));
}

TEST(HeaderMatchTest, ExactValueIsCaseSensitive) {
  config::RouteMatch m;
  m.headers.push_back(header("x-env", config::HeaderMatch::Kind::Exact, "prod"));
  EXPECT_TRUE(routeMatches(m, request("GET", "/", "h", {{"X-Env", "prod"}})));
  EXPECT_FALSE(routeMatches(m, request("GET", "/", "h", {{"X-Env", "Prod"}})));
  EXPECT_FALSE(routeMatches(m, request("GET", "/", "h", {{"X-Env", "prod2"}})));
  EXPECT_FALSE(routeMatches(m, request("GET", "/", "h", {{"X-Env", ""}})));
  EXPECT_FALSE(routeMatches(m, request("GET", "/")));
}

TEST(HeaderMatchTest, Prefix) {
  config::RouteMatch m;
  m.headers.push_back(header("user-agent", config::HeaderMatch::Kind::Prefix, "curl/"));
  EXPECT_TRUE(routeMatches(m, request("GET", "/", "h", {{"User-Agent", "curl/8.1"}})));
  EXPECT_TRUE(routeMatches(m, request("GET", "/", "h", {{"User-Agent", "curl/"}})));
  EXPECT_FALSE(routeMatches(m, request("GET", "/", "h", {{"User-Agent", "curl"}})));
  EXPECT_FALSE(routeMatches(m, request("GET", "/", "h", {{"User-Agent", "Mozilla curl/8"}})));
}

TEST(HeaderMatchTest, Regex) {
  config::RouteMatch m;
  m.headers.push_back(header("x-version", config::HeaderMatch::Kind::Regex, "^v[0-9]+$"));
  EXPECT_TRUE(routeMatches(m, request("GET", "/", "h", {{"X-Version", "v12"}})));
  EXPECT_FALSE(routeMatches(m, request("GET", "/", "h", {{"X-Version", "v12b"}})));
  EXPECT_FALSE(routeMatches(m, request("GET", "/", "h", {{"X-Version", "12"}})));
  EXPECT_FALSE(routeMatches(m, request("GET", "/")));
}

TEST(HeaderMatchTest, AllHeaderRulesMustMatch) {
  config::RouteMatch m;
  m.headers.push_back(header("x-a", config::HeaderMatch::Kind::Exact, "1"));
  m.headers.push_back(header("x-b", config::HeaderMatch::Kind::Present));
  EXPECT_TRUE(routeMatches(m, request("GET", "/", "h", {{"x-a", "1"}, {"x-b", "z"}})));
  EXPECT_FALSE(routeMatches(m, request("GET", "/", "h", {{"x-a", "1"}})));
  EXPECT_FALSE(routeMatches(m, request("GET", "/", "h", {{"x-b", "z"}})));
  EXPECT_FALSE(routeMatches(m, request("GET", "/", "h", {{"x-a", "2"}, {"x-b", "z"}})));
}

TEST(RouteMatchTest, AllConditionsCombined) {
  auto m = pathPrefix("/api/orders");
  m.host = "*.example.com";
  m.method = "POST";
  m.headers.push_back(header("x-canary", config::HeaderMatch::Kind::Exact, "1"));
  auto ok = request("POST", "/api/orders/1", "shop.example.com:8443", {{"X-Canary", "1"}});
  EXPECT_TRUE(routeMatches(m, ok));
  EXPECT_FALSE(
      routeMatches(m, request("GET", "/api/orders/1", "shop.example.com", {{"X-Canary", "1"}})));
  EXPECT_FALSE(
      routeMatches(m, request("POST", "/api/orders/1", "example.com", {{"X-Canary", "1"}})));
  EXPECT_FALSE(
      routeMatches(m, request("POST", "/api/cart", "shop.example.com", {{"X-Canary", "1"}})));
  EXPECT_FALSE(
      routeMatches(m, request("POST", "/api/orders/1", "shop.example.com", {{"X-Canary", "0"}})));
}

// ---- listener: order ----

config::Listener threeRoutes() {
  config::Listener l;
  l.name = "ingress";
  auto canary = pathPrefix("/api");
  canary.headers.push_back(header("x-canary", config::HeaderMatch::Kind::Exact, "1"));
  l.routes.push_back(route("canary", std::move(canary)));       // 0
  l.routes.push_back(route("api", pathPrefix("/api")));         // 1
  l.routes.push_back(route("ping", pathExact("/ping")));        // 2
  l.routes.push_back(route("api-exact", pathExact("/api/x")));  // 3: shadowed by 1
  return l;
}

TEST(MatchRouteTest, FirstMatchWins) {
  auto l = threeRoutes();
  EXPECT_EQ(matchRoute(l, request("GET", "/api/x", "h", {{"X-Canary", "1"}})),
            std::optional<size_t>(0));
  EXPECT_EQ(matchRoute(l, request("GET", "/api/x")), std::optional<size_t>(1));
  EXPECT_EQ(matchRoute(l, request("GET", "/api/x", "h", {{"X-Canary", "2"}})),
            std::optional<size_t>(1));
  EXPECT_EQ(matchRoute(l, request("GET", "/ping")), std::optional<size_t>(2));
}

TEST(MatchRouteTest, NoMatchIsNullopt) {
  auto l = threeRoutes();
  EXPECT_EQ(matchRoute(l, request("GET", "/pingx")), std::nullopt);
  EXPECT_EQ(matchRoute(l, request("GET", "/")), std::nullopt);
  config::Listener empty;
  EXPECT_EQ(matchRoute(empty, request("GET", "/")), std::nullopt);
}

TEST(MatchRouteTest, CatchAllAfterSpecificRoutes) {
  auto l = threeRoutes();
  l.routes.push_back(route("default", config::RouteMatch{}));  // 4
  EXPECT_EQ(matchRoute(l, request("GET", "/anything")), std::optional<size_t>(4));
  EXPECT_EQ(matchRoute(l, request("GET", "/ping")), std::optional<size_t>(2));
}

}  // namespace
}  // namespace sidetrace::filters
