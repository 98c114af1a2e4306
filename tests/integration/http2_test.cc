// HTTP/2 through the real binary: h2c by prior knowledge next to HTTP/1.1 on one listener, h2
// over TLS (ALPN), translation h2→HTTP/1 (FakeUpstream) and HTTP/1→h2 / h2→h2 (a Node http2
// origin), multiplexing both ways, resets both ways, the stream and header-list limits, abuse
// (rapid reset, SETTINGS flood, garbage) and drain with GOAWAY.

#include <signal.h>

#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdlib>
#include <fstream>
#include <iostream>
#include <memory>
#include <set>
#include <thread>

#include "tests/integration/h2_client.h"
#include "tests/integration/h2_upstream.h"
#include "tests/integration/harness.h"
#include "tests/integration/test_pki.h"
#include "tests/integration/tls_client.h"

namespace sidetrace::it {
namespace {

using std::chrono::milliseconds;

std::string patternString(size_t n) {
  std::string s(n, '\0');
  for (size_t i = 0; i < n; ++i) {
    s[i] = patternByte(i);
  }
  return s;
}

// Index of the first differing byte, or -1 (so a failure prints an offset, not a megabyte).
int64_t firstDiff(const std::string& a, const std::string& b) {
  size_t n = std::min(a.size(), b.size());
  for (size_t i = 0; i < n; ++i) {
    if (a[i] != b[i]) {
      return static_cast<int64_t>(i);
    }
  }
  return a.size() == b.size() ? -1 : static_cast<int64_t>(n);
}

H2Request get(const std::string& path, Headers headers = {}) {
  H2Request r;
  r.path = path;
  r.headers = std::move(headers);
  return r;
}

H2Request post(const std::string& path, std::string body, Headers headers = {}) {
  H2Request r;
  r.method = "POST";
  r.path = path;
  r.body = std::move(body);
  r.headers = std::move(headers);
  return r;
}

std::vector<FlatSpan> serverSpansFor(const std::vector<FlatSpan>& spans, const std::string& path) {
  std::vector<FlatSpan> out;
  for (const auto& s : spansOfKind(spans, 2)) {
    if (s.str("url.path") == path) {
      out.push_back(s);
    }
  }
  return out;
}

class Http2Test : public IntegrationTest {
 protected:
  // The standard config with `routes` placed before its own (first match wins), `clusters` added,
  // and `listener` lines (e.g. "    tls: ...\n") on the listener.
  std::string configWith(const ProxyConfig& c, const std::string& routes,
                         const std::string& clusters, const std::string& listener = "") {
    std::string y = standardConfigYaml(c);
    const std::string routes_key = "    routes:\n";
    y.insert(y.find(routes_key) + routes_key.size(), routes);
    y.insert(y.find(routes_key), listener);
    const std::string clusters_key = "clusters:\n";
    y.insert(y.find(clusters_key) + clusters_key.size(), clusters);
    return y;
  }

  // Starts the Node h2 origin and the proxy with route prefix /h2/ → cluster h2app (protocol
  // http2) in front of the standard routes.
  void startWithH2Cluster(const ProxyConfig& c = {}, int upstream_max_streams = 0) {
    h2up_ = std::make_unique<H2Upstream>(proc_.dir(), upstream_max_streams);
    ASSERT_TRUE(h2up_->ok()) << h2up_->error();
    std::string routes =
        "      - name: h2\n"
        "        match: { prefix: /h2/ }\n"
        "        cluster: h2app\n";
    std::string clusters =
        "  - name: h2app\n    endpoints: [ \"127.0.0.1:" + std::to_string(h2up_->port()) +
        "\" ]\n    protocol: http2\n    connect_timeout: 1s\n";
    ASSERT_NO_FATAL_FAILURE(startProxyYaml(configWith(c, routes, clusters)));
  }

  void TearDown() override {
    if (HasFailure() && h2up_) {
      std::cerr << h2up_->logs();
    }
    IntegrationTest::TearDown();
  }

  // The proxy still answers on a fresh h2c connection and on HTTP/1.1.
  void expectHealthy() {
    H2Connection fresh(port());
    ASSERT_TRUE(fresh.connected()) << fresh.error();
    auto r = fresh.request(get("/ping"));
    ASSERT_TRUE(r) << "no answer on a fresh h2c connection: " << fresh.error();
    EXPECT_EQ(r->status, 200) << r->describe();
    EXPECT_EQ(r->body, "pong");
    auto h1 = httpRequest(port(), "GET", "/ping");
    ASSERT_TRUE(h1) << "no answer over HTTP/1.1";
    EXPECT_EQ(h1->status, 200);
    EXPECT_TRUE(proc_.running());
  }

  std::unique_ptr<H2Upstream> h2up_;
};

// The test peers themselves, without the proxy: the h2 client and the raw frame helpers against
// the Node origin, so a failure elsewhere in this file points at the proxy.
TEST_F(Http2Test, PeersWorkWithoutProxy) {
  H2Upstream up(proc_.dir());
  ASSERT_TRUE(up.ok()) << up.error();
  H2Connection c(up.port());
  ASSERT_TRUE(c.connected()) << c.error();

  H2Request echo = post("/echo/direct", "hello h2", {{"x-custom", "yes"}, {"te", "trailers"}});
  echo.authority = "origin.test:8443";
  echo.trailers = {{"x-req-trailer", "sent"}};
  std::vector<H2Request> batch = {echo,
                                  get("/trailers"),
                                  get("/reset"),
                                  get("/large/100000"),
                                  get("/status/503"),
                                  get("/h2/echo/prefixed"),
                                  get("/reset-mid"),
                                  get("/gate/2"),
                                  get("/gate/2")};
  for (int i = 0; i < 20; ++i) {
    batch.push_back(post("/echo/" + std::to_string(i), "body " + std::to_string(i)));
  }
  auto rs = c.requestAll(batch);
  ASSERT_EQ(rs.size(), batch.size());
  EXPECT_TRUE(rs[0].ok()) << rs[0].describe();
  EXPECT_EQ(rs[0].body, "hello h2");
  EXPECT_EQ(rs[0].header("x-echo-authority").value_or("<missing>"), "origin.test:8443");
  EXPECT_EQ(rs[0].header("x-echo-method").value_or("<missing>"), "POST");
  EXPECT_EQ(rs[0].header("x-echo-x-custom").value_or("<missing>"), "yes");
  EXPECT_EQ(rs[0].header("x-echo-te").value_or("<missing>"), "trailers");
  EXPECT_EQ(rs[0].trailer("x-echo-x-req-trailer").value_or("<missing>"), "sent");
  EXPECT_TRUE(rs[1].ok()) << rs[1].describe();
  EXPECT_EQ(rs[1].body, "with trailers");
  EXPECT_EQ(rs[1].trailer("x-trailer").value_or("<missing>"), "done");
  EXPECT_EQ(rs[2].reset_code.value_or(0), h2::kInternalError) << rs[2].describe();
  EXPECT_EQ(rs[3].status, 200);
  EXPECT_EQ(firstDiff(rs[3].body, patternString(100000)), -1);
  EXPECT_EQ(rs[4].status, 503);
  EXPECT_EQ(rs[5].header("x-echo-path").value_or("<missing>"), "/h2/echo/prefixed");
  EXPECT_EQ(rs[6].status, 200);
  EXPECT_EQ(rs[6].reset_code.value_or(0), h2::kInternalError) << rs[6].describe();
  EXPECT_EQ(rs[7].body, "gate");
  EXPECT_EQ(rs[8].body, "gate");
  for (size_t i = 9; i < rs.size(); ++i) {
    EXPECT_TRUE(rs[i].ok()) << rs[i].describe();
    EXPECT_EQ(rs[i].body, "body " + std::to_string(i - 9));
  }
  EXPECT_FALSE(c.goaway().received);

  // A client reset reaches the origin's counters; /stats does not count its own connection.
  int32_t stalled = c.submit(get("/stall/10000"));
  ASSERT_GT(stalled, 0);
  ASSERT_EQ(up.waitStat("open_streams", 1), 1);
  ASSERT_TRUE(c.reset(stalled));
  EXPECT_EQ(up.waitStat("peer_resets", 1), 1);
  auto stats = up.stats();
  EXPECT_EQ(stats["connections"], 1);
  EXPECT_EQ(stats["streams"], static_cast<int64_t>(batch.size()) + 1);

  // Raw frames: the peer's SETTINGS come back; garbage after the preface gets a GOAWAY.
  H2RawConnection raw(up.port());
  ASSERT_TRUE(raw.connected());
  ASSERT_TRUE(raw.sendPreface());
  auto settings =
      raw.readUntil([](const H2Frame& f) { return f.type == h2::kSettings; }, milliseconds(5000));
  ASSERT_TRUE(settings);
  EXPECT_EQ(settings->stream_id, 0);
  HpackEncoder enc;
  ASSERT_TRUE(raw.send(h2frame::settingsAck() + enc.requestFrame(1, "/stall/10000") +
                       h2frame::rstStream(1, h2::kCancel) + h2frame::ping(7)));
  auto pong = raw.readUntil(
      [](const H2Frame& f) { return f.type == h2::kPing && (f.flags & h2::kFlagAck) != 0; },
      milliseconds(5000));
  ASSERT_TRUE(pong);
  ASSERT_TRUE(raw.send(h2frame::frame(h2::kData, 0, 0, "not on stream zero")));
  auto goaway = raw.readUntilGoaway(milliseconds(5000));
  ASSERT_TRUE(goaway) << "no GOAWAY after DATA on stream 0";
  EXPECT_EQ(goaway->errorCode(), h2::kProtocolError) << goaway->describe();
}

// h2c by prior knowledge to the HTTP/1 FakeUpstream: the upstream sees a well-formed HTTP/1.1
// request (Host from :authority, a framed body, no pseudo-headers, no TE) and the SERVER span
// says protocol version 2.
TEST_F(Http2Test, H2cGetAndPostToHttp1Upstream) {
  ASSERT_NO_FATAL_FAILURE(startProxy());
  H2Connection c(port());
  ASSERT_TRUE(c.connected()) << c.error();

  H2Request g = get("/api/h2-get?x=1", {{"te", "trailers"}, {"x-custom", "kept"}});
  g.authority = "h2.example:8080";
  H2Request p1 = post("/api/h2-post", "hello from h2", {{"content-type", "text/plain"}});
  p1.authority = "h2.example:8080";
  std::string big = patternString(200000);
  H2Request p2 = post("/api/h2-post-len", big, {{"content-length", std::to_string(big.size())}});
  p2.authority = "h2.example:8080";
  auto rs = c.requestAll({g, p1, p2});
  ASSERT_EQ(rs.size(), 3u);
  for (const auto& r : rs) {
    EXPECT_TRUE(r.ok()) << r.describe();
    EXPECT_EQ(r.status, 200) << r.describe();
    for (const char* hop : {"connection", "keep-alive", "transfer-encoding"}) {
      EXPECT_FALSE(r.header(hop)) << hop << " in an h2 response\n" << describeHeaders(r.headers);
    }
  }
  EXPECT_EQ(rs[0].header("x-echo-method").value_or("<missing>"), "GET");
  EXPECT_EQ(rs[0].header("x-echo-target").value_or("<missing>"), "/api/h2-get?x=1");
  EXPECT_EQ(rs[1].body, "hello from h2");
  EXPECT_EQ(firstDiff(rs[2].body, big), -1);

  auto reqs = upstream_.waitForRequests(3, milliseconds(5000));
  ASSERT_EQ(reqs.size(), 3u);
  for (const auto& q : reqs) {
    SCOPED_TRACE(q.method + " " + q.target);
    EXPECT_EQ(q.version, 11);
    EXPECT_EQ(q.header("host").value_or("<missing>"), "h2.example:8080");
    EXPECT_EQ(q.headerCount("host"), 1u);
    EXPECT_FALSE(q.hasHeader("te")) << describeHeaders(q.headers);
    for (const auto& [k, v] : q.headers) {
      EXPECT_FALSE(!k.empty() && k[0] == ':') << "pseudo-header upstream: " << k;
    }
    if (q.method == "GET") {
      EXPECT_EQ(q.target, "/api/h2-get?x=1");
      EXPECT_EQ(q.header("x-custom").value_or("<missing>"), "kept");
      EXPECT_TRUE(q.body.empty());
      EXPECT_FALSE(q.chunked) << "a request that ended with its HEADERS has no body";
      EXPECT_EQ(q.header("content-length").value_or("0"), "0");
    } else if (q.target == "/api/h2-post") {
      EXPECT_EQ(q.body, "hello from h2");
      EXPECT_TRUE(q.chunked || q.header("content-length") == "13") << describeHeaders(q.headers);
      EXPECT_EQ(q.header("content-type").value_or("<missing>"), "text/plain");
    } else {
      EXPECT_EQ(q.target, "/api/h2-post-len");
      EXPECT_EQ(firstDiff(q.body, big), -1);
      EXPECT_EQ(q.header("content-length").value_or("<missing>"), std::to_string(big.size()));
      EXPECT_FALSE(q.chunked);
    }
  }

  auto spans = waitSpansSettled(otlp_, 6);
  auto servers = spansOfKind(spans, 2);
  ASSERT_EQ(servers.size(), 3u) << describeAll(spans);
  for (const auto& s : servers) {
    EXPECT_EQ(s.str("network.protocol.version"), "2") << s.describe();
  }
  EXPECT_EQ(serverSpansFor(spans, "/api/h2-post").size(), 1u) << describeAll(spans);
}

// RFC 9113 §8.2.3: an h2 client may send each cookie as a field of its own; the HTTP/1.1 upstream
// gets one Cookie line, the crumbs joined with "; " in order.
TEST_F(Http2Test, CookieCrumbsReachAnHttp1UpstreamAsOneLine) {
  ASSERT_NO_FATAL_FAILURE(startProxy());
  H2Connection c(port());
  ASSERT_TRUE(c.connected()) << c.error();
  auto r =
      c.request(get("/api/cookies",
                    {{"cookie", "a=1"}, {"x-between", "1"}, {"cookie", "b=2"}, {"cookie", "c=3"}}));
  ASSERT_TRUE(r) << c.error();
  EXPECT_EQ(r->status, 200) << r->describe();
  auto reqs = upstream_.waitForRequests(1, milliseconds(5000));
  ASSERT_EQ(reqs.size(), 1u);
  EXPECT_EQ(reqs[0].headerCount("cookie"), 1u) << describeHeaders(reqs[0].headers);
  EXPECT_EQ(reqs[0].header("cookie").value_or("<missing>"), "a=1; b=2; c=3");
  EXPECT_EQ(reqs[0].header("x-between").value_or("<missing>"), "1");
}

// content-type application/grpc on a path that is not "/package.Service/Method" keeps the HTTP span
// name: a client must not mint a span name per path.
TEST_F(Http2Test, GrpcContentTypeOnAnyPathDoesNotNameSpans) {
  ASSERT_NO_FATAL_FAILURE(startProxy());
  H2Connection c(port());
  ASSERT_TRUE(c.connected()) << c.error();
  auto r = c.request(post("/api/orders/12345", "", {{"content-type", "application/grpc"}}));
  ASSERT_TRUE(r) << c.error();
  auto spans = waitSpansSettled(otlp_, 2);
  ASSERT_EQ(spans.size(), 2u) << describeAll(spans);
  for (const auto& s : spans) {
    EXPECT_EQ(s.name, "POST app") << s.describe();
    EXPECT_FALSE(s.has("rpc.service")) << s.describe();
  }
}

// One listener, both protocols: an h2c connection and an HTTP/1.1 connection open side by side.
TEST_F(Http2Test, Http11AndH2cShareTheListener) {
  ASSERT_NO_FATAL_FAILURE(startProxy());
  H2Connection h2c(port());
  ASSERT_TRUE(h2c.connected()) << h2c.error();
  auto a = h2c.request(get("/api/over-h2"));
  ASSERT_TRUE(a) << h2c.error();
  EXPECT_EQ(a->status, 200) << a->describe();

  HttpConnection h1(port());
  ASSERT_TRUE(h1.connected());
  auto b = h1.request("GET", "/api/over-h1");
  ASSERT_TRUE(b) << h1.lastError();
  EXPECT_EQ(b->status, 200);
  EXPECT_EQ(b->version, 11);

  auto c = h2c.request(get("/ping"));
  ASSERT_TRUE(c) << h2c.error();
  EXPECT_EQ(c->body, "pong");
  auto d = h1.request("GET", "/ping");
  ASSERT_TRUE(d) << h1.lastError();
  EXPECT_EQ(d->body, "pong");

  auto spans = waitSpansSettled(otlp_, 6);
  auto h2span = serverSpansFor(spans, "/api/over-h2");
  auto h1span = serverSpansFor(spans, "/api/over-h1");
  ASSERT_EQ(h2span.size(), 1u) << describeAll(spans);
  ASSERT_EQ(h1span.size(), 1u) << describeAll(spans);
  EXPECT_EQ(h2span[0].str("network.protocol.version"), "2");
  EXPECT_EQ(h1span[0].str("network.protocol.version"), "1.1");
}

// 100 streams in flight on one connection, each with its own body, all answered correctly.
TEST_F(Http2Test, HundredConcurrentStreamsOnOneConnection) {
  ASSERT_NO_FATAL_FAILURE(startProxy());
  H2Connection c(port());
  ASSERT_TRUE(c.connected()) << c.error();
  std::vector<H2Request> reqs;
  for (int i = 0; i < 100; ++i) {
    reqs.push_back(post("/api/many/" + std::to_string(i),
                        "body-" + std::to_string(i) + "-" + patternString(1000 + i * 37)));
  }
  auto rs = c.requestAll(reqs, milliseconds(30000));
  ASSERT_EQ(rs.size(), 100u);
  for (size_t i = 0; i < rs.size(); ++i) {
    EXPECT_TRUE(rs[i].ok()) << "request " << i << ": " << rs[i].describe();
    EXPECT_EQ(rs[i].header("x-echo-target").value_or("<missing>"), reqs[i].path);
    EXPECT_EQ(firstDiff(rs[i].body, reqs[i].body), -1) << "request " << i;
  }
  EXPECT_FALSE(c.goaway().received);
  EXPECT_EQ(upstream_.waitForRequests(100, milliseconds(5000)).size(), 100u);
}

// h2 → h2 cluster: bodies both ways, request trailers to the origin, response trailers back,
// :authority kept, traceparent injected with the CLIENT span as parent.
TEST_F(Http2Test, H2ClusterCarriesBodiesAndTrailers) {
  ASSERT_NO_FATAL_FAILURE(startWithH2Cluster());
  H2Connection c(port());
  ASSERT_TRUE(c.connected()) << c.error();

  std::string body = patternString(100000);
  H2Request echo = post("/h2/echo/a", body, {{"te", "trailers"}, {"x-custom", "1"}});
  echo.authority = "h2-origin.test";
  echo.trailers = {{"x-req-trailer", "yes"}};
  auto rs = c.requestAll({echo, get("/h2/trailers"), get("/h2/large/1000000"),
                          post("/h2/echo/sized", "sized", {{"content-length", "5"}}),
                          post("/h2/echo/small", "tiny")});
  ASSERT_EQ(rs.size(), 5u);
  for (size_t i : {3u, 4u}) {
    EXPECT_TRUE(rs[i].ok()) << rs[i].describe();
  }
  EXPECT_EQ(rs[3].body, "sized");
  EXPECT_EQ(rs[3].header("x-echo-content-length").value_or("<missing>"), "5");
  EXPECT_EQ(rs[4].body, "tiny") << "a small body without content-length (HEADERS and DATA read "
                                   "together) must reach the origin";

  const H2Response& e = rs[0];
  EXPECT_TRUE(e.ok()) << e.describe();
  EXPECT_EQ(firstDiff(e.body, body), -1);
  EXPECT_EQ(e.header("x-echo-authority").value_or("<missing>"), "h2-origin.test");
  EXPECT_EQ(e.header("x-echo-path").value_or("<missing>"), "/h2/echo/a");
  EXPECT_EQ(e.header("x-echo-method").value_or("<missing>"), "POST");
  EXPECT_EQ(e.header("x-echo-x-custom").value_or("<missing>"), "1");
  EXPECT_EQ(e.trailer("x-echo-x-req-trailer").value_or("<missing>"), "yes")
      << "request trailers must reach an h2 origin";
  auto tp = Traceparent::parse(e.header("x-echo-traceparent").value_or(""));
  ASSERT_TRUE(tp) << "no traceparent upstream\n" << describeHeaders(e.headers);

  EXPECT_TRUE(rs[1].ok()) << rs[1].describe();
  EXPECT_EQ(rs[1].body, "with trailers");
  EXPECT_EQ(rs[1].trailer("x-trailer").value_or("<missing>"), "done");
  EXPECT_EQ(rs[1].trailer("x-checksum").value_or("<missing>"), "42");

  EXPECT_TRUE(rs[2].ok()) << rs[2].describe();
  EXPECT_EQ(rs[2].body.size(), 1000000u);
  EXPECT_EQ(firstDiff(rs[2].body, patternString(1000000)), -1);

  auto spans = waitSpansSettled(otlp_, 10);
  auto server = serverSpansFor(spans, "/h2/echo/a");
  ASSERT_EQ(server.size(), 1u) << describeAll(spans);
  EXPECT_EQ(server[0].str("network.protocol.version"), "2");
  std::optional<FlatSpan> client;
  for (const auto& s : spansOfKind(spans, 3)) {
    if (s.parent_span_id == server[0].span_id) {
      client = s;
    }
  }
  ASSERT_TRUE(client) << describeAll(spans);
  EXPECT_EQ(tp->trace_id, server[0].trace_id);
  EXPECT_EQ(tp->parent_id, client->span_id) << "the CLIENT span is the upstream's parent";
}

// HTTP/1.1 client → h2 cluster: :authority from Host, a chunked request body as DATA, and the
// h2 response (no content-length) framed again for the HTTP/1.1 client, on one keep-alive
// connection.
TEST_F(Http2Test, Http11ClientToH2Cluster) {
  ASSERT_NO_FATAL_FAILURE(startWithH2Cluster());
  HttpConnection c(port());
  ASSERT_TRUE(c.connected());

  auto g = c.request("GET", "/h2/echo/h1?q=1", {{"Host", "legacy.example"}, {"X-Custom", "v"}});
  ASSERT_TRUE(g) << c.lastError();
  EXPECT_EQ(g->status, 200);
  EXPECT_EQ(g->header("x-echo-authority").value_or("<missing>"), "legacy.example");
  EXPECT_EQ(g->header("x-echo-path").value_or("<missing>"), "/h2/echo/h1?q=1");
  EXPECT_EQ(g->header("x-echo-method").value_or("<missing>"), "GET");
  EXPECT_EQ(g->header("x-echo-scheme").value_or("<missing>"), "http");
  EXPECT_EQ(g->header("x-echo-x-custom").value_or("<missing>"), "v");
  if (auto host = g->header("x-echo-host")) {
    EXPECT_EQ(*host, "legacy.example") << "Host and :authority must agree";
  }
  std::string names = g->header("x-echo-header-names").value_or("");
  for (const char* hop : {"connection", "keep-alive", "transfer-encoding", "upgrade"}) {
    EXPECT_EQ(("," + names + ",").find("," + std::string(hop) + ","), std::string::npos)
        << hop << " sent to the h2 origin: " << names;
  }
  EXPECT_TRUE(g->keep_alive);

  ASSERT_TRUE(c.send(
      "POST /h2/echo/chunked HTTP/1.1\r\nHost: legacy.example\r\nTransfer-Encoding: chunked\r\n"
      "\r\n5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n"));
  auto p = c.readResponse();
  ASSERT_TRUE(p) << c.lastError();
  EXPECT_EQ(p->status, 200);
  EXPECT_EQ(p->body, "hello world");

  auto l = c.request("GET", "/h2/large/300000", {{"Host", "legacy.example"}});
  ASSERT_TRUE(l) << c.lastError();
  EXPECT_EQ(l->status, 200);
  EXPECT_TRUE(l->chunked || l->header("content-length") == "300000") << describeHeaders(l->headers);
  EXPECT_EQ(firstDiff(l->body, patternString(300000)), -1);
  EXPECT_TRUE(l->keep_alive);
  EXPECT_EQ(h2up_->stats()["streams"], 3);
}

// Trailers cross between the protocols: a chunked HTTP/1.1 request's trailers reach the h2 origin
// (which echoes them as response trailers), and those come back in the HTTP/1.1 client's chunked
// response; fields that may not travel in trailers (TE here) are dropped on the way.
TEST_F(Http2Test, Http11TrailersCrossToAndFromH2Cluster) {
  ASSERT_NO_FATAL_FAILURE(startWithH2Cluster());
  TcpSocket s;
  ASSERT_TRUE(s.connect(port()));
  ASSERT_TRUE(s.sendAll(
      "POST /h2/echo/trailers HTTP/1.1\r\nHost: legacy.example\r\nConnection: close\r\n"
      "Transfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\nX-Req-Trailer: sent\r\nTE: gzip\r\n"
      "\r\n"));
  const std::string raw = s.readUntilClosed(milliseconds(5000));
  ASSERT_TRUE(raw.starts_with("HTTP/1.1 200")) << raw;
  EXPECT_TRUE(raw.ends_with("\r\n0\r\nx-echo-x-req-trailer: sent\r\n\r\n")) << raw;
}

// An HTTP/1 origin's chunked response trailers reach an h2c client as a trailing HEADERS block,
// without the fields HTTP/2 forbids there.
TEST_F(Http2Test, Http1UpstreamTrailersReachH2Client) {
  upstream_.on("/api/resp-trailers", Behavior::chunked("alpha-beta", 2,
                                                       {{"X-Checksum", "xyz"},
                                                        {"Keep-Alive", "timeout=1"},
                                                        {"Transfer-Encoding", "chunked"}}));
  ASSERT_NO_FATAL_FAILURE(startProxy());
  H2Connection c(port());
  ASSERT_TRUE(c.connected()) << c.error();
  auto rs = c.requestAll({get("/api/resp-trailers")});
  ASSERT_EQ(rs.size(), 1u);
  EXPECT_TRUE(rs[0].ok()) << rs[0].describe();
  EXPECT_EQ(rs[0].body, "alpha-beta");
  EXPECT_EQ(rs[0].trailer("x-checksum").value_or("<missing>"), "xyz") << rs[0].describe();
  EXPECT_FALSE(rs[0].trailer("keep-alive")) << rs[0].describe();
  EXPECT_FALSE(rs[0].trailer("transfer-encoding")) << rs[0].describe();
}

// An h2c client's request trailers go through the same rule as HTTP/1 ones
// (filters::allowedInTrailers), to an HTTP/1 origin (its chunked trailer section) and to an h2
// origin (a trailing HEADERS frame): authentication, content and cache fields are left out.
TEST_F(Http2Test, H2ClientTrailersLeaveOutWhatNoTrailerMayCarry) {
  ASSERT_NO_FATAL_FAILURE(startWithH2Cluster());
  const Headers trailers = {{"x-ok", "1"},
                            {"authorization", "Bearer leaked"},
                            {"content-type", "text/evil"},
                            {"cache-control", "no-store"},
                            {"x-ok-too", "2"}};
  H2Request to_h1 = post("/api/h2-trailers", "hello", {{"te", "trailers"}});
  to_h1.trailers = trailers;
  H2Request to_h2 = post("/h2/echo/trailers", "hello", {{"te", "trailers"}});
  to_h2.trailers = trailers;
  H2Connection c(port());
  ASSERT_TRUE(c.connected()) << c.error();
  auto rs = c.requestAll({to_h1, to_h2});
  ASSERT_EQ(rs.size(), 2u);
  for (const auto& r : rs) {
    EXPECT_TRUE(r.ok()) << r.describe();
    EXPECT_EQ(r.body, "hello");
  }

  auto reqs = upstream_.waitForRequests(1, milliseconds(5000));
  ASSERT_EQ(reqs.size(), 1u);
  EXPECT_TRUE(reqs[0].chunked);
  EXPECT_EQ(reqs[0].trailers, (Headers{{"x-ok", "1"}, {"x-ok-too", "2"}}))
      << describeHeaders(reqs[0].trailers);

  EXPECT_EQ(rs[1].trailer("x-echo-x-ok").value_or("<missing>"), "1") << rs[1].describe();
  EXPECT_EQ(rs[1].trailer("x-echo-x-ok-too").value_or("<missing>"), "2") << rs[1].describe();
  for (const char* name : {"x-echo-authorization", "x-echo-content-type", "x-echo-cache-control"}) {
    EXPECT_FALSE(rs[1].trailer(name)) << name << "\n" << rs[1].describe();
  }
}

// 50 HTTP/1.1 requests in flight at once through the proxy (the origin holds them until all 50
// wait) share a handful of multiplexed upstream connections: at most two per worker.
TEST_F(Http2Test, ParallelRequestsShareFewUpstreamConnections) {
  ProxyConfig cfg;
  ASSERT_NO_FATAL_FAILURE(startWithH2Cluster(cfg));
  constexpr int kParallel = 50;
  std::atomic<int> ok{0};
  std::vector<std::thread> threads;
  for (int i = 0; i < kParallel; ++i) {
    threads.emplace_back([&] {
      auto r = httpRequest(port(), "GET", "/h2/gate/50", {}, {}, milliseconds(20000));
      if (r && r->status == 200 && r->body == "gate") {
        ++ok;
      }
    });
  }
  for (auto& t : threads) {
    t.join();
  }
  EXPECT_EQ(ok.load(), kParallel);
  auto stats = h2up_->stats();
  EXPECT_EQ(stats["streams"], kParallel);
  EXPECT_EQ(stats["max_open_streams"], kParallel);
  EXPECT_GE(stats["connections"], 1);
  EXPECT_LE(stats["connections"], cfg.workers * 2) << "upstream h2 connections not multiplexed";
}

// The origin sends GOAWAY (a graceful restart): the stream it covers completes, and later requests
// go out on a new upstream connection instead of failing on the old one.
TEST_F(Http2Test, UpstreamGoawayMovesLaterStreamsToANewConnection) {
  ProxyConfig cfg;
  cfg.workers = 1;  // one upstream pool, so the connection count is exact
  ASSERT_NO_FATAL_FAILURE(startWithH2Cluster(cfg));
  H2Connection c(port());
  ASSERT_TRUE(c.connected()) << c.error();
  auto warm = c.request(get("/h2/echo/warm"));
  ASSERT_TRUE(warm) << c.error();
  EXPECT_EQ(warm->status, 200) << warm->describe();
  auto bye = c.request(get("/h2/goaway"));
  ASSERT_TRUE(bye) << c.error();
  EXPECT_EQ(bye->status, 200) << bye->describe();
  EXPECT_EQ(bye->body, "bye");
  for (int i = 0; i < 3; ++i) {
    auto r = c.request(get("/h2/echo/after"));
    ASSERT_TRUE(r) << c.error();
    EXPECT_EQ(r->status, 200) << "request " << i << " after GOAWAY: " << r->describe();
  }
  auto stats = h2up_->stats();
  EXPECT_EQ(stats["goaways"], 1);
  EXPECT_EQ(stats["connections"], 2) << "one connection before the GOAWAY, one after";
  EXPECT_EQ(stats["streams"], 5);
}

// The origin advertises 5 concurrent streams: 20 requests at once on one downstream connection
// still all succeed (the proxy queues, or opens more connections, rather than exceeding the
// peer's limit and getting REFUSED_STREAM).
TEST_F(Http2Test, UpstreamMaxConcurrentStreamsRespected) {
  ASSERT_NO_FATAL_FAILURE(startWithH2Cluster({}, 5));
  H2Connection c(port());
  ASSERT_TRUE(c.connected()) << c.error();
  // One request first, so the upstream connection exists and its SETTINGS have arrived: this
  // tests the limit as advertised, not a race with the connection's first flight.
  auto warm = c.request(get("/h2/echo/warm"));
  ASSERT_TRUE(warm) << c.error();
  ASSERT_TRUE(warm->ok()) << warm->describe();
  std::vector<H2Request> reqs;
  for (int i = 0; i < 20; ++i) {
    reqs.push_back(get("/h2/stall/100"));
  }
  auto rs = c.requestAll(reqs);
  for (const auto& r : rs) {
    EXPECT_TRUE(r.ok()) << r.describe();
    EXPECT_EQ(r.body, "stalled");
  }
  EXPECT_EQ(h2up_->stats()["streams"], 21);
}

// The origin resets some streams: those are reset downstream (or answered 502 if nothing was
// forwarded yet); the other streams on the same connections finish normally.
TEST_F(Http2Test, UpstreamResetResetsOnlyThatStream) {
  ASSERT_NO_FATAL_FAILURE(startWithH2Cluster());
  H2Connection c(port());
  ASSERT_TRUE(c.connected()) << c.error();
  auto rs = c.requestAll({post("/h2/echo/1", "one"), get("/h2/reset"), post("/h2/echo/2", "two"),
                          get("/h2/reset-mid"), post("/h2/echo/3", "three")});
  ASSERT_EQ(rs.size(), 5u);
  for (size_t i : {0u, 2u, 4u}) {
    EXPECT_TRUE(rs[i].ok()) << rs[i].describe();
  }
  EXPECT_EQ(rs[0].body, "one");
  EXPECT_EQ(rs[2].body, "two");
  EXPECT_EQ(rs[4].body, "three");
  EXPECT_TRUE(rs[1].reset_code || rs[1].status == 502) << rs[1].describe();
  EXPECT_TRUE(rs[3].reset_code || rs[3].status == 502)
      << "a response cut by the origin must not end cleanly: " << rs[3].describe();
  EXPECT_FALSE(c.goaway().received) << "a stream error must not end the connection";
  auto after = c.request(get("/h2/echo/after"));
  ASSERT_TRUE(after) << c.error();
  EXPECT_TRUE(after->ok()) << after->describe();

  // The same over HTTP/1.1: 502 before the response started; a cut-off body otherwise.
  auto r502 = httpRequest(port(), "GET", "/h2/reset");
  ASSERT_TRUE(r502);
  EXPECT_EQ(r502->status, 502);
  HttpConnection h1(port());
  ASSERT_TRUE(h1.send(buildRequest("GET", "/h2/reset-mid", {})));
  auto mid = h1.readResponse(milliseconds(5000));
  if (mid) {
    EXPECT_EQ(mid->status, 502) << "a complete 200 for a response the origin cut off";
  }
}

// The client resets a stream while the origin stalls: the proxy cancels the upstream exchange,
// the stream's SERVER span ends, and the connection serves the next request.
TEST_F(Http2Test, ClientResetCancelsUpstreamExchange) {
  upstream_.onPrefix("/api/stall-cancel", Behavior::stall(milliseconds(10000)));
  ASSERT_NO_FATAL_FAILURE(startWithH2Cluster());
  H2Connection c(port());
  ASSERT_TRUE(c.connected()) << c.error();

  // h2 origin: the reset reaches it as a reset of the upstream stream.
  int32_t id = c.submit(get("/h2/stall/10000"));
  ASSERT_GT(id, 0);
  ASSERT_EQ(h2up_->waitStat("open_streams", 1), 1) << "request never reached the origin";
  ASSERT_TRUE(c.reset(id, h2::kCancel));
  EXPECT_GE(h2up_->waitStat("peer_resets", 1), 1) << "upstream stream not cancelled";
  auto next = c.request(get("/h2/echo/next"));
  ASSERT_TRUE(next) << c.error();
  EXPECT_TRUE(next->ok()) << next->describe();

  // HTTP/1 origin: same from the client's side.
  int32_t id1 = c.submit(get("/api/stall-cancel"));
  ASSERT_GT(id1, 0);
  ASSERT_EQ(upstream_.waitForRequests(1, milliseconds(5000)).size(), 1u);
  ASSERT_TRUE(c.reset(id1, h2::kCancel));
  auto next1 = c.request(get("/api/after-cancel"));
  ASSERT_TRUE(next1) << c.error();
  EXPECT_TRUE(next1->ok()) << next1->describe();
  EXPECT_FALSE(c.goaway().received);

  auto spans = waitSpansSettled(otlp_, 8);
  EXPECT_EQ(serverSpansFor(spans, "/h2/stall/10000").size(), 1u) << describeAll(spans);
  EXPECT_EQ(serverSpansFor(spans, "/api/stall-cancel").size(), 1u) << describeAll(spans);
}

// max_concurrent_streams is advertised and enforced; max_request_headers_bytes is advertised as
// SETTINGS_MAX_HEADER_LIST_SIZE and a larger header list fails only its own stream.
TEST_F(Http2Test, StreamAndHeaderLimits) {
  upstream_.onPrefix("/api/hold", Behavior::stall(milliseconds(3000)));
  ProxyConfig cfg;
  cfg.limits_extra = "max_concurrent_streams: 4, max_request_headers_bytes: 8192";
  ASSERT_NO_FATAL_FAILURE(startProxy(cfg));

  H2Connection c(port());
  ASSERT_TRUE(c.connected()) << c.error();
  ASSERT_TRUE(c.runUntil([&] { return c.peerSettingsReceived(); }, milliseconds(5000)));
  auto settings = c.peerSettings();
  EXPECT_EQ(settings.count(h2::kSettingsMaxConcurrentStreams) ? settings[3] : 0u, 4u);
  EXPECT_EQ(settings.count(h2::kSettingsMaxHeaderListSize) ? settings[6] : 0u, 8192u);

  auto big = c.request(get("/api/big-headers", {{"x-big", std::string(20000, 'b')}}));
  ASSERT_TRUE(big) << c.error();
  EXPECT_TRUE(big->status == 431 || big->reset_code) << big->describe();
  auto after = c.request(get("/api/after-big"));
  ASSERT_TRUE(after) << c.error();
  EXPECT_TRUE(after->ok()) << after->describe();
  EXPECT_FALSE(c.goaway().received) << "an oversized header list must not end the connection";

  // limits.max_request_headers_count (default 100) holds for HTTP/2 as for HTTP/1.
  Headers many;
  for (int i = 0; i < 150; ++i) {
    many.emplace_back("x-h" + std::to_string(i), "v");
  }
  auto counted = c.request(get("/api/many-headers", many));
  ASSERT_TRUE(counted) << c.error();
  EXPECT_EQ(counted->status, 431) << counted->describe();

  // Ten requests with four allowed at once: a client that respects SETTINGS gets them all.
  std::vector<H2Request> ten(10, get("/api/ten"));
  for (const auto& r : c.requestAll(ten)) {
    EXPECT_TRUE(r.ok()) << r.describe();
  }

  // A client that ignores the limit: the fifth concurrent stream is refused (RST_STREAM), or the
  // connection ends with a GOAWAY that does not cover it; the first four are not reset.
  H2RawConnection raw(port());
  ASSERT_TRUE(raw.connected());
  HpackEncoder enc;
  std::string burst = h2frame::preface() + h2frame::settings();
  for (int32_t id : {1, 3, 5, 7, 9}) {
    burst += enc.requestFrame(id, "/api/hold/" + std::to_string(id));
  }
  ASSERT_TRUE(raw.send(burst));
  auto refused = raw.readUntil(
      [](const H2Frame& f) {
        return (f.type == h2::kRstStream && f.stream_id == 9) || f.type == h2::kGoaway;
      },
      milliseconds(5000));
  ASSERT_TRUE(refused) << "the fifth stream was neither refused nor answered with GOAWAY";
  if (refused->type == h2::kGoaway) {
    EXPECT_LT(refused->goawayLastStreamId(), 9) << refused->describe();
  }
  for (const auto& f : raw.frames()) {
    EXPECT_FALSE(f.type == h2::kRstStream && f.stream_id < 9) << f.describe();
  }
}

// Rapid reset (CVE-2023-44487): 1000 × HEADERS + RST_STREAM in one burst ends the connection;
// the proxy keeps serving others.
TEST_F(Http2Test, RapidResetEndsConnection) {
  upstream_.onPrefix("/api/rapid", Behavior::stall(milliseconds(500)));
  ASSERT_NO_FATAL_FAILURE(startProxy());
  H2RawConnection raw(port());
  ASSERT_TRUE(raw.connected());
  HpackEncoder enc;
  std::string burst = h2frame::preface() + h2frame::settings();
  for (int32_t i = 0; i < 1000; ++i) {
    int32_t id = 2 * i + 1;
    burst += enc.requestFrame(id, "/api/rapid");
    burst += h2frame::rstStream(id, h2::kCancel);
  }
  raw.send(burst);  // may fail part-way: the proxy is allowed to hang up mid-burst
  auto goaway = raw.readUntilGoaway(milliseconds(10000));
  EXPECT_TRUE(goaway || raw.closed())
      << "connection still open after 1000 rapid resets; read " << raw.frames().size() << " frames";
  ASSERT_NO_FATAL_FAILURE(expectHealthy());
}

// SETTINGS flood: a client that sends SETTINGS frames by the thousand and never reads the ACKs
// (a small receive buffer, so they back up) gets GOAWAY or a closed connection.
TEST_F(Http2Test, SettingsFloodEndsConnection) {
  ASSERT_NO_FATAL_FAILURE(startProxy());
  H2RawConnection raw(port(), 4096);
  ASSERT_TRUE(raw.connected());
  std::string flood = h2frame::preface() + h2frame::settings();
  std::string one = h2frame::settings();
  for (int i = 0; i < 100000; ++i) {
    flood += one;
  }
  raw.send(flood, milliseconds(3000));  // stops when the proxy stops reading or hangs up
  auto goaway = raw.readUntilGoaway(milliseconds(10000));
  EXPECT_TRUE(goaway || raw.closed())
      << "connection still open after a SETTINGS flood; sent " << raw.lastSent() << " of "
      << flood.size() << " bytes, read " << raw.frames().size() << " frames";
  ASSERT_NO_FATAL_FAILURE(expectHealthy());
}

// Bytes that are not HTTP/2 after the preface: GOAWAY PROTOCOL_ERROR (or a close), for both
// text instead of SETTINGS and a frame that is illegal where it is.
TEST_F(Http2Test, GarbageAfterPrefaceGetsGoaway) {
  ASSERT_NO_FATAL_FAILURE(startProxy());
  const std::vector<std::string> cases = {
      h2frame::preface() + "GET / HTTP/1.1\r\nHost: x\r\n\r\n",
      h2frame::preface() + h2frame::settings() + h2frame::frame(h2::kData, 0, 0, "stream 0"),
      h2frame::preface() + h2frame::settings() + h2frame::windowUpdate(0, 0),
  };
  for (size_t i = 0; i < cases.size(); ++i) {
    SCOPED_TRACE("case " + std::to_string(i));
    H2RawConnection raw(port());
    ASSERT_TRUE(raw.connected());
    raw.send(cases[i]);
    auto goaway = raw.readUntilGoaway(milliseconds(5000));
    EXPECT_TRUE(goaway || raw.closed()) << "connection left open";
    if (goaway) {
      EXPECT_EQ(goaway->errorCode(), h2::kProtocolError) << goaway->describe();
    }
    EXPECT_TRUE(raw.closed() || raw.socket().waitClosed(milliseconds(3000)))
        << "connection not closed after the GOAWAY";
  }
  ASSERT_NO_FATAL_FAILURE(expectHealthy());
}

// A TLS listener: ALPN h2 for a client that offers it, http/1.1 for one that offers only that,
// and HTTP/1.1 for one that sends no ALPN.
TEST_F(Http2Test, TlsListenerNegotiatesH2OrHttp11) {
  TestPki pki = makeTestPki(proc_.dir(), "srv", "it-ca", {"localhost"}, {"127.0.0.1"});
  std::string tls = "    tls: { cert: \"" + pki.cert_file + "\", key: \"" + pki.key_file + "\" }\n";
  ASSERT_NO_FATAL_FAILURE(startProxyYaml(configWith({}, "", "", tls)));

  H2ClientOptions o;
  o.tls = true;
  o.sni = "localhost";
  o.ca_file = pki.ca_file;
  o.alpn = {"h2", "http/1.1"};
  H2Connection h2(port(), o);
  ASSERT_TRUE(h2.connected()) << h2.error();
  EXPECT_EQ(h2.alpn(), "h2");
  H2Request req = get("/api/tls-h2");
  req.scheme = "https";
  req.authority = "localhost";
  auto r = h2.request(req);
  ASSERT_TRUE(r) << h2.error();
  EXPECT_TRUE(r->ok()) << r->describe();
  EXPECT_EQ(r->status, 200);

  for (bool send_alpn : {true, false}) {
    SCOPED_TRACE(send_alpn ? "ALPN http/1.1" : "no ALPN");
    TlsClientOptions t;
    t.sni = "localhost";
    t.ca_file = pki.ca_file;
    t.alpn = send_alpn;
    t.offer_h2 = false;
    TlsConnection h1(port(), t);
    ASSERT_TRUE(h1.handshakeOk()) << h1.error();
    EXPECT_EQ(h1.alpn(), send_alpn ? "http/1.1" : "");
    auto r1 = h1.request("GET", "/api/tls-h1", {{"Host", "localhost"}});
    ASSERT_TRUE(r1) << h1.error();
    EXPECT_EQ(r1->status, 200);
  }

  auto spans = waitSpansSettled(otlp_, 6);
  auto s2 = serverSpansFor(spans, "/api/tls-h2");
  ASSERT_EQ(s2.size(), 1u) << describeAll(spans);
  EXPECT_EQ(s2[0].str("network.protocol.version"), "2");
  EXPECT_EQ(s2[0].str("url.scheme"), "https");
  for (const auto& s : serverSpansFor(spans, "/api/tls-h1")) {
    EXPECT_EQ(s.str("network.protocol.version"), "1.1");
  }
}

// SIGTERM with a stream in flight: the client gets GOAWAY, the stream still completes, the
// connection then closes and the process exits 0.
TEST_F(Http2Test, DrainSendsGoawayAndFinishesInFlightStream) {
  upstream_.onPrefix("/api/drain-slow", Behavior::stall(milliseconds(1000)));
  ASSERT_NO_FATAL_FAILURE(startProxy());
  H2Connection c(port());
  ASSERT_TRUE(c.connected()) << c.error();
  int32_t id = c.submit(get("/api/drain-slow"));
  ASSERT_GT(id, 0);
  ASSERT_EQ(upstream_.waitForRequests(1, milliseconds(5000)).size(), 1u);

  ASSERT_EQ(::kill(proc_.pid(), SIGTERM), 0);
  ASSERT_TRUE(c.runUntil([&] { return c.response(id).closed; }, milliseconds(10000)))
      << c.response(id).describe() << "; " << c.error();
  EXPECT_TRUE(c.goaway().received) << "no GOAWAY while draining";
  EXPECT_GE(c.goaway().last_stream_id, id) << "GOAWAY must cover the in-flight stream";
  const H2Response& r = c.response(id);
  EXPECT_TRUE(r.ok()) << r.describe();
  EXPECT_EQ(r.status, 200);
  EXPECT_TRUE(c.waitClosed(milliseconds(5000))) << "connection left open after the drain";

  auto exit = proc_.wait(milliseconds(10000));
  EXPECT_TRUE(exit.exited);
  EXPECT_EQ(exit.code, 0) << "signal " << exit.signal;
}

// limits.idle_timeout applies to HTTP/2 connections too: with no stream open for that long the
// proxy sends GOAWAY and closes; a connection that keeps a stream open past it is left alone.
TEST_F(Http2Test, IdleConnectionGetsGoawayAndCloses) {
  upstream_.onPrefix("/api/idle-slow", Behavior::stall(milliseconds(700)));
  ProxyConfig cfg;
  cfg.limits_extra = "idle_timeout: 300ms";
  ASSERT_NO_FATAL_FAILURE(startProxy(cfg));
  H2Connection busy(port());
  ASSERT_TRUE(busy.connected()) << busy.error();
  auto slow = busy.request(get("/api/idle-slow"));
  ASSERT_TRUE(slow) << busy.error();
  EXPECT_EQ(slow->status, 200) << "a stream open past idle_timeout must not be cut";
  EXPECT_FALSE(busy.goaway().received);

  H2Connection c(port());
  ASSERT_TRUE(c.connected()) << c.error();
  auto r = c.request(get("/ping"));
  ASSERT_TRUE(r) << c.error();
  EXPECT_EQ(r->status, 200);
  EXPECT_TRUE(c.waitClosed(milliseconds(5000))) << "idle h2 connection left open";
  EXPECT_TRUE(c.goaway().received) << "closed without GOAWAY";
  EXPECT_EQ(c.goaway().error_code, 0u);
}

// ---- header block bounds, time limits and stream rules ----

// A "Vm...: 1234 kB" field of /proc/<pid>/status, in KiB (0 if unreadable).
uint64_t procStatusKiB(int pid, const std::string& field) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/status");
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind(field + ":", 0) == 0) {
      return std::stoull(line.substr(field.size() + 1));
    }
  }
  return 0;
}

// An HPACK integer with a `prefix_bits` prefix (RFC 7541 §5.1); `first` holds the bits above it.
void hpackInt(std::string& out, uint8_t first, int prefix_bits, size_t v) {
  const size_t max = (size_t{1} << prefix_bits) - 1;
  if (v < max) {
    out += static_cast<char>(first | v);
    return;
  }
  out += static_cast<char>(first | max);
  for (v -= max; v >= 128; v >>= 7) {
    out += static_cast<char>((v & 0x7f) | 0x80);
  }
  out += static_cast<char>(v);
}

// An HPACK bomb of `size` bytes: `prefix` (e.g. pseudo-headers), one literal field
// "x-bomb: <4000 bytes>" added to the decoder's dynamic table (index 62, 4038 of its 4096 bytes),
// then one-byte references to it: every further byte expands to 4038 bytes of header list.
std::string hpackBomb(size_t size, std::string_view prefix = {}) {
  std::string b(prefix);
  b += '\x40';  // literal with incremental indexing, new name
  hpackInt(b, 0, 7, 6);
  b += "x-bomb";
  hpackInt(b, 0, 7, 4000);
  b.append(4000, 'b');
  b.append(size > b.size() ? size - b.size() : 0, '\xbe');  // indexed field 62
  return b;
}

// :method GET, :scheme http, :path / (static table), :authority 127.0.0.1 (literal, not indexed):
// a request head that leaves the decoder's dynamic table alone.
constexpr std::string_view kStaticHead =
    "\x82\x86\x84\x01\x09"
    "127.0.0.1";

// The largest block nghttp2 takes: HEADERS + 8 CONTINUATION frames of 16 KiB (CVE-2024-28182).
constexpr size_t kBombBytes = 9 * 16384;

// The :status of a HEADERS frame the proxy sent on a raw connection (decoded in arrival order).
int statusOf(HpackDecoder& dec, const H2Frame& f) {
  auto fields = dec.decode(HpackDecoder::blockOf(f));
  if (fields) {
    for (const auto& [name, value] : *fields) {
      if (name == ":status") {
        return std::atoi(value.c_str());
      }
    }
  }
  return 0;
}

// limits.max_request_headers_bytes bounds request trailers as it bounds heads: 147 KiB of HPACK
// that expands to ~570 MiB of fields resets the stream as trailers and is answered 431 as a
// head, while the proxy's memory stays put; the connection and the proxy keep serving.
TEST_F(Http2Test, HpackBombInTrailersOrHeadIsBoundedByTheHeaderLimit) {
  upstream_.onPrefix("/api/bomb", Behavior::stall(milliseconds(5000)));
  ProxyConfig cfg;
  // Decoding a bomb takes a CPU-bound moment (longer on a loaded machine); this test is about
  // memory, not the header timeout.
  cfg.limits_extra = "request_header_timeout: 60s";
  ASSERT_NO_FATAL_FAILURE(startProxy(cfg));
  ASSERT_NO_FATAL_FAILURE(expectHealthy());  // first-use allocations happen before measuring
  const uint64_t rss_before = procStatusKiB(proc_.pid(), "VmRSS");

  H2RawConnection raw(port());
  ASSERT_TRUE(raw.connected());
  HpackEncoder enc;
  std::string out = h2frame::preface() + h2frame::settings();
  out += enc.headersFrame(1,
                          {{":method", "POST"},
                           {":scheme", "http"},
                           {":authority", "127.0.0.1"},
                           {":path", "/api/bomb"}},
                          false);
  out += h2frame::data(1, "body", false);
  out += h2frame::headerBlock(1, hpackBomb(kBombBytes), true);  // the trailers
  // A head: :method GET, :scheme http, :path / by static index, :authority not indexed (the bomb
  // stays at index 62), then the bomb.
  out += h2frame::headerBlock(3, hpackBomb(kBombBytes, kStaticHead), true);
  ASSERT_TRUE(raw.send(out));

  HpackDecoder dec;
  std::optional<uint32_t> reset1;
  int status3 = 0;
  bool reset3 = false;
  raw.readUntil(
      [&](const H2Frame& f) {
        if (f.type == h2::kRstStream && f.stream_id == 1) {
          reset1 = f.errorCode();
        } else if (f.type == h2::kHeaders && f.stream_id == 3) {
          status3 = statusOf(dec, f);
        } else if (f.type == h2::kRstStream && f.stream_id == 3) {
          reset3 = true;
        } else if (f.type == h2::kHeaders) {
          statusOf(dec, f);  // keeps the decoder in step
        }
        return reset1 && (status3 != 0 || reset3);
      },
      milliseconds(20000));
  const uint64_t rss_after = procStatusKiB(proc_.pid(), "VmRSS");
  std::cout << "[ hpack bomb ] sidetrace VmRSS before " << rss_before << " kB, after " << rss_after
            << " kB\n";
  EXPECT_TRUE(reset1) << "trailers over the limit did not reset stream 1";
  EXPECT_EQ(status3, 431) << (reset3 ? "stream 3 was reset" : "");
  EXPECT_FALSE(raw.closed()) << "one stream's header block ended the connection";
  EXPECT_LT(rss_after, rss_before + 32 * 1024) << "the bomb was stored";

  // The connection still works (its HPACK state in step): a request that needs no table entry.
  std::string ping = "\x82\x86";
  ping += '\x04';  // :path, literal without indexing
  hpackInt(ping, 0, 7, 5);
  ping += "/ping";
  ping += std::string(kStaticHead).substr(3);  // :authority
  ASSERT_TRUE(raw.send(h2frame::headerBlock(5, ping, true)));
  auto pong = raw.readUntil(
      [](const H2Frame& f) { return f.stream_id == 5 && (f.flags & h2::kFlagEndStream) != 0; },
      milliseconds(5000));
  EXPECT_TRUE(pong) << "no answer on the same connection after the bombs";
  ASSERT_NO_FATAL_FAILURE(expectHealthy());
}

// Upstream response heads and trailer sections are bounded (1 MiB each, as from an HTTP/1
// upstream): a head over it is a 502, trailers over it reset the client's stream, both with
// error.type protocol_error; smaller ones pass.
TEST_F(Http2Test, UpstreamHeaderBlocksOverTheLimitFailTheStream) {
  ASSERT_NO_FATAL_FAILURE(startWithH2Cluster());
  H2Connection c(port());
  ASSERT_TRUE(c.connected()) << c.error();

  auto small = c.request(get("/h2/big-headers/4000"));
  ASSERT_TRUE(small) << c.error();
  EXPECT_TRUE(small->ok()) << small->describe();
  EXPECT_EQ(small->status, 200);
  EXPECT_TRUE(small->header("x-big"));

  auto head = c.request(get("/h2/big-headers/1100000"));
  ASSERT_TRUE(head) << c.error();
  EXPECT_EQ(head->status, 502) << head->describe();
  EXPECT_FALSE(head->header("x-big"));

  auto trailers = c.request(get("/h2/big-trailers/1100000"));
  ASSERT_TRUE(trailers) << c.error();
  EXPECT_FALSE(trailers->ok()) << "trailers over the limit passed: " << trailers->describe();
  EXPECT_FALSE(trailers->trailer("x-big"));

  auto echo = c.request(post("/h2/echo", "after"));
  ASSERT_TRUE(echo) << c.error();
  EXPECT_TRUE(echo->ok()) << echo->describe();
  EXPECT_EQ(echo->body, "after");

  // The CLIENT span of each attempt says why it failed.
  auto spans = waitSpansSettled(otlp_, 8);
  for (const std::string path : {"/h2/big-headers/1100000", "/h2/big-trailers/1100000"}) {
    int found = 0;
    for (const auto& span : spansOfKind(spans, 3)) {
      if (span.str("url.full").ends_with(path)) {
        ++found;
        EXPECT_EQ(span.str("error.type"), "protocol_error") << path;
      }
    }
    EXPECT_EQ(found, 1) << path << "\n" << describeAll(spans);
  }
}

// limits.request_header_timeout bounds a header block: HEADERS without END_HEADERS followed by
// nothing gets GOAWAY (not covering the unfinished stream) and the connection closes.
TEST_F(Http2Test, UnfinishedHeaderBlockTimesOut) {
  ProxyConfig cfg;
  cfg.limits_extra = "request_header_timeout: 500ms";
  ASSERT_NO_FATAL_FAILURE(startProxy(cfg));
  H2RawConnection raw(port());
  ASSERT_TRUE(raw.connected());
  HpackEncoder enc;
  std::string block = enc.encode(
      {{":method", "GET"}, {":scheme", "http"}, {":authority", "127.0.0.1"}, {":path", "/ping"}});
  ASSERT_TRUE(raw.send(h2frame::preface() + h2frame::settings() +
                       h2frame::headerBlock(1, block, true, 16384, false)));
  auto goaway = raw.readUntilGoaway(milliseconds(10000));
  ASSERT_TRUE(goaway) << "no GOAWAY for a header block left open; read " << raw.frames().size()
                      << " frames";
  EXPECT_EQ(goaway->goawayLastStreamId(), 0) << goaway->describe();
  EXPECT_TRUE(raw.closed() || raw.socket().waitClosed(milliseconds(5000)))
      << "connection left open after the GOAWAY";
  ASSERT_NO_FATAL_FAILURE(expectHealthy());
}

// A request body that never ends: the route timeout answers 504 and ends the stream, the proxy
// then resets it (RST_STREAM NO_ERROR, RFC 9113 §8.1), and the idle connection gets GOAWAY.
TEST_F(Http2Test, UnfinishedRequestBodyDoesNotHoldTheConnection) {
  ProxyConfig cfg;
  cfg.limits_extra = "idle_timeout: 1s";
  ASSERT_NO_FATAL_FAILURE(startProxy(cfg));  // /slow: route timeout 300ms
  H2RawConnection raw(port());
  ASSERT_TRUE(raw.connected());
  HpackEncoder enc;
  ASSERT_TRUE(raw.send(h2frame::preface() + h2frame::settings() +
                       enc.headersFrame(1,
                                        {{":method", "POST"},
                                         {":scheme", "http"},
                                         {":authority", "127.0.0.1"},
                                         {":path", "/slow/body"}},
                                        false) +
                       h2frame::data(1, "part of a body", false)));
  HpackDecoder dec;
  int status = 0;
  bool ended = false;
  std::optional<uint32_t> reset;
  auto goaway = raw.readUntil(
      [&](const H2Frame& f) {
        if (f.stream_id == 1 && f.type == h2::kHeaders) {
          status = statusOf(dec, f);
        }
        if (f.stream_id == 1 && (f.type == h2::kHeaders || f.type == h2::kData) &&
            (f.flags & h2::kFlagEndStream) != 0) {
          ended = true;
        }
        if (f.stream_id == 1 && f.type == h2::kRstStream) {
          reset = f.errorCode();
        }
        return f.type == h2::kGoaway;
      },
      milliseconds(15000));
  EXPECT_EQ(status, 504);
  EXPECT_TRUE(ended) << "the 504 did not end the stream";
  ASSERT_TRUE(reset) << "the stream was left open for the rest of the body";
  EXPECT_EQ(*reset, h2::kNoError);
  EXPECT_TRUE(goaway) << "the connection was held after its only stream ended";
  EXPECT_TRUE(raw.closed() || raw.socket().waitClosed(milliseconds(5000)));
}

// A client that opens no flow-control window: the answered stream, which cannot move a byte,
// is reset after limits.idle_timeout instead of holding the connection forever.
TEST_F(Http2Test, StreamStalledByFlowControlIsReset) {
  ProxyConfig cfg;
  cfg.limits_extra = "idle_timeout: 500ms";
  ASSERT_NO_FATAL_FAILURE(startProxy(cfg));
  H2RawConnection raw(port());
  ASSERT_TRUE(raw.connected());
  HpackEncoder enc;
  ASSERT_TRUE(raw.send(h2frame::preface() +
                       h2frame::settings({{h2::kSettingsInitialWindowSize, 0}}) +
                       enc.requestFrame(1, "/ping")));
  auto reset =
      raw.readUntil([](const H2Frame& f) { return f.type == h2::kRstStream && f.stream_id == 1; },
                    milliseconds(10000));
  ASSERT_TRUE(reset) << "a stream that cannot send was kept; read " << raw.frames().size()
                     << " frames";
  EXPECT_EQ(reset->errorCode(), h2::kCancel);
  for (const auto& f : raw.frames()) {
    EXPECT_NE(f.type, h2::kData) << "DATA beyond a zero window: " << f.describe();
  }
  EXPECT_TRUE(raw.readUntilGoaway(milliseconds(10000)) || raw.closed())
      << "idle connection not closed after the reset";
}

// A client that stops reading: writes that make no progress for limits.idle_timeout end the
// connection (nothing else would: the stream's exchange is still within its route timeout).
TEST_F(Http2Test, ClientThatStopsReadingIsDisconnected) {
  constexpr uint64_t kBody = 64ull << 20;
  upstream_.on("/api/huge", Behavior::large(kBody));
  ProxyConfig cfg;
  cfg.limits_extra = "idle_timeout: 1s";
  ASSERT_NO_FATAL_FAILURE(startProxy(cfg));
  H2RawConnection raw(port(), 4096);
  ASSERT_TRUE(raw.connected());
  HpackEncoder enc;
  ASSERT_TRUE(raw.send(
      h2frame::preface() + h2frame::settings({{h2::kSettingsInitialWindowSize, 0x7fffffff}}) +
      h2frame::windowUpdate(0, 0x7fffffff - 65535) + enc.requestFrame(1, "/api/huge")));
  std::this_thread::sleep_for(milliseconds(4000));  // read nothing: the proxy's writes back up

  uint64_t data_bytes = 0;
  bool ended = false;
  raw.readUntil(
      [&](const H2Frame& f) {
        if (f.type == h2::kData && f.stream_id == 1) {
          data_bytes += f.payload.size();
          ended = ended || (f.flags & h2::kFlagEndStream) != 0;
        }
        return false;  // until the connection closes
      },
      milliseconds(20000));
  std::cout << "[ stopped reader ] received " << data_bytes << " of " << kBody
            << " body bytes before the close\n";
  EXPECT_TRUE(raw.closed()) << "connection still open";
  EXPECT_FALSE(ended) << "the whole body arrived: the stalled writer was not cut";
  EXPECT_LT(data_bytes, kBody);
}

// RFC 9113 §5.1.1: HEADERS opening stream 3 after stream 5 is a connection error
// (GOAWAY PROTOCOL_ERROR), while trailers on an older stream that is still open are fine.
TEST_F(Http2Test, StreamOpenedBelowAHigherOneIsAConnectionError) {
  ASSERT_NO_FATAL_FAILURE(startProxy());
  {
    H2RawConnection raw(port());
    ASSERT_TRUE(raw.connected());
    HpackEncoder enc;
    // One statement each: the encoder's table must see the blocks in the order they are sent.
    std::string out = h2frame::preface() + h2frame::settings();
    out += enc.requestFrame(5, "/ping");
    out += enc.requestFrame(3, "/ping");
    ASSERT_TRUE(raw.send(out));
    auto goaway = raw.readUntilGoaway(milliseconds(5000));
    ASSERT_TRUE(goaway) << "stream 3 after stream 5 was not a connection error";
    EXPECT_EQ(goaway->errorCode(), h2::kProtocolError) << goaway->describe();
    EXPECT_EQ(goaway->goawayLastStreamId(), 5) << goaway->describe();
    EXPECT_TRUE(raw.closed() || raw.socket().waitClosed(milliseconds(3000)));
    for (const auto& f : raw.frames()) {
      EXPECT_NE(f.stream_id, 3) << "stream 3 was served: " << f.describe();
    }
  }
  {
    upstream_.onPrefix("/api/trailed", Behavior::echo());
    H2RawConnection raw(port());
    ASSERT_TRUE(raw.connected());
    HpackEncoder enc;
    std::string out = h2frame::preface() + h2frame::settings();
    out += enc.headersFrame(1,
                            {{":method", "POST"},
                             {":scheme", "http"},
                             {":authority", "127.0.0.1"},
                             {":path", "/api/trailed"}},
                            false);
    out += h2frame::data(1, "body", false);
    out += enc.requestFrame(3, "/ping");
    out += enc.headersFrame(1, {{"x-trailer", "t"}}, true);  // trailers on the older stream
    ASSERT_TRUE(raw.send(out));
    std::set<int32_t> ended;
    raw.readUntil(
        [&](const H2Frame& f) {
          if ((f.type == h2::kHeaders || f.type == h2::kData) &&
              (f.flags & h2::kFlagEndStream) != 0) {
            ended.insert(f.stream_id);
          }
          return ended.size() == 2 || f.type == h2::kGoaway;
        },
        milliseconds(5000));
    EXPECT_EQ(ended, (std::set<int32_t>{1, 3}));
    for (const auto& f : raw.frames()) {
      EXPECT_NE(f.type, h2::kGoaway) << f.describe();
      EXPECT_NE(f.type, h2::kRstStream) << f.describe();
    }
  }
  ASSERT_NO_FATAL_FAILURE(expectHealthy());
}

// After the route timeout the 504 ends the stream (END_STREAM), so the client is not left
// waiting.
TEST_F(Http2Test, RouteTimeoutAnswers504AndEndsTheStream) {
  upstream_.onPrefix("/slow/h2", Behavior::stall(milliseconds(5000)));
  ASSERT_NO_FATAL_FAILURE(startProxy());  // /slow: route timeout 300ms
  H2Connection c(port());
  ASSERT_TRUE(c.connected()) << c.error();
  auto r = c.request(get("/slow/h2"), milliseconds(10000));
  ASSERT_TRUE(r) << "the stream never ended";
  EXPECT_EQ(r->status, 504) << r->describe();
  EXPECT_TRUE(r->ok()) << r->describe();
  EXPECT_EQ(r->body, "Gateway Timeout\n");
}

}  // namespace
}  // namespace sidetrace::it
