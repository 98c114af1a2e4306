// End-to-end proxying through the real binary: headers, errors, HTTP/1.1 features.

#include <gtest/gtest.h>

#include <chrono>
#include <thread>

#include "tests/integration/harness.h"

namespace sidetrace::it {
namespace {

using std::chrono::milliseconds;
using Clock = std::chrono::steady_clock;

std::string patternString(size_t n, uint64_t seed = 0) {
  std::string s(n, '\0');
  for (size_t i = 0; i < n; ++i) {
    s[i] = patternByte(i + seed);
  }
  return s;
}

// Index of the first differing byte, or -1 (so a failure prints an offset, not 8 MiB).
int64_t firstDiff(const std::string& a, const std::string& b) {
  size_t n = std::min(a.size(), b.size());
  for (size_t i = 0; i < n; ++i) {
    if (a[i] != b[i]) {
      return static_cast<int64_t>(i);
    }
  }
  return a.size() == b.size() ? -1 : static_cast<int64_t>(n);
}

class ProxyTest : public IntegrationTest {};

// 1. Basic proxying and header policy.
TEST_F(ProxyTest, GetIsProxiedWithForwardedHeadersAndHopByHopRemoved) {
  upstream_.on("/api/hello", Behavior::fixed(200, "hello world",
                                             {{"X-Upstream", "yes"},
                                              {"Connection", "X-Resp-Hop"},
                                              {"X-Resp-Hop", "must-not-reach-client"},
                                              {"Keep-Alive", "timeout=5"}}));
  ASSERT_NO_FATAL_FAILURE(startProxy());

  HttpConnection c(port());
  ASSERT_TRUE(c.connected());
  auto r = c.request("GET", "/api/hello?x=1",
                     {{"Connection", "keep-alive, X-Drop-Me"},
                      {"X-Drop-Me", "secret"},
                      {"Keep-Alive", "timeout=5"},
                      {"TE", "trailers"},
                      {"Proxy-Connection", "keep-alive"},
                      {"X-Custom", "kept"},
                      {"User-Agent", "it-client/1.0"}});
  ASSERT_TRUE(r) << c.lastError();
  EXPECT_EQ(r->status, 200);
  EXPECT_EQ(r->body, "hello world");
  EXPECT_EQ(r->header("x-upstream").value_or("<missing>"), "yes");
  EXPECT_FALSE(r->header("x-resp-hop")) << "header listed in the upstream's Connection leaked";
  EXPECT_FALSE(r->header("keep-alive")) << "upstream Keep-Alive header leaked to the client";

  auto reqs = upstream_.waitForRequests(1, milliseconds(5000));
  ASSERT_EQ(reqs.size(), 1u);
  const auto& q = reqs[0];
  EXPECT_EQ(q.method, "GET");
  EXPECT_EQ(q.target, "/api/hello?x=1");
  EXPECT_EQ(q.version, 11);
  EXPECT_EQ(q.header("x-forwarded-for").value_or("<missing>"), "127.0.0.1");
  EXPECT_EQ(q.header("x-forwarded-proto").value_or("<missing>"), "http");
  EXPECT_EQ(q.header("x-custom").value_or("<missing>"), "kept");
  EXPECT_EQ(q.header("user-agent").value_or("<missing>"), "it-client/1.0");
  EXPECT_FALSE(q.hasHeader("x-drop-me")) << describeHeaders(q.headers);
  EXPECT_FALSE(q.hasHeader("keep-alive")) << describeHeaders(q.headers);
  EXPECT_FALSE(q.hasHeader("te")) << describeHeaders(q.headers);
  EXPECT_FALSE(q.hasHeader("proxy-connection")) << describeHeaders(q.headers);
  if (auto conn = q.header("connection")) {
    EXPECT_EQ(conn->find("X-Drop-Me"), std::string::npos) << "caller's Connection passed on";
  }
  EXPECT_TRUE(q.hasHeader("host"));

  // The downstream connection stays open for a second request.
  auto r2 = c.request("GET", "/api/hello");
  ASSERT_TRUE(r2) << c.lastError();
  EXPECT_EQ(r2->status, 200);
}

// With the field limit raised, a head with thousands of fields and thousands of Connection names is
// stripped exactly (the names are looked up, not compared with every field).
TEST_F(ProxyTest, ConnectionNamesStrippedAmongThousandsOfFields) {
  ProxyConfig cfg;
  cfg.limits_extra = "max_request_headers_count: 10000";
  ASSERT_NO_FATAL_FAILURE(startProxy(cfg));
  std::string names = "x-drop-a";
  for (int i = 0; i < 5000; ++i) {
    names += ",n" + std::to_string(i % 100);
  }
  names += ", X-Drop-B";
  Headers fields{{"Connection", names}};
  for (int i = 0; i < 1500; ++i) {
    fields.emplace_back(i % 3 == 0 ? "x-drop-a" : i % 3 == 1 ? "X-DROP-B" : "x-keep", "1");
  }
  auto r = httpRequest(port(), "GET", "/api/strip", fields);
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 200);
  auto reqs = upstream_.waitForRequests(1, milliseconds(5000));
  ASSERT_EQ(reqs.size(), 1u);
  EXPECT_EQ(reqs[0].headerCount("x-keep"), 500u);
  EXPECT_EQ(reqs[0].headerCount("x-drop-a"), 0u);
  EXPECT_EQ(reqs[0].headerCount("x-drop-b"), 0u);
  EXPECT_EQ(reqs[0].headerCount("n1"), 0u);
}

TEST_F(ProxyTest, ExistingXForwardedForIsAppended) {
  ASSERT_NO_FATAL_FAILURE(startProxy());
  auto r = httpRequest(port(), "GET", "/api/xff", {{"X-Forwarded-For", "203.0.113.7"}});
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 200);
  auto reqs = upstream_.waitForRequests(1, milliseconds(5000));
  ASSERT_EQ(reqs.size(), 1u);
  EXPECT_EQ(reqs[0].header("x-forwarded-for").value_or("<missing>"), "203.0.113.7, 127.0.0.1");
}

// 6. Errors.
TEST_F(ProxyTest, NoRouteIs404WithServerSpanOnly) {
  ASSERT_NO_FATAL_FAILURE(startProxy());
  auto r = httpRequest(port(), "GET", "/nowhere");
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 404);
  auto spans = waitSpansSettled(otlp_, 1);
  auto servers = spansOfKind(spans, 2);
  ASSERT_EQ(servers.size(), 1u) << describeAll(spans);
  EXPECT_EQ(servers[0].integer("http.response.status_code").value_or(-1), 404)
      << servers[0].describe();
  EXPECT_TRUE(spansOfKind(spans, 3).empty()) << describeAll(spans);
  EXPECT_EQ(upstream_.requestCount(), 0u);
}

TEST_F(ProxyTest, DirectResponseRoute) {
  ASSERT_NO_FATAL_FAILURE(startProxy());
  auto r = httpRequest(port(), "GET", "/teapot");
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 418);
  EXPECT_EQ(r->body, "short and stout");
  auto ping = httpRequest(port(), "GET", "/ping");
  ASSERT_TRUE(ping);
  EXPECT_EQ(ping->status, 200);
  EXPECT_EQ(ping->body, "pong");
  EXPECT_EQ(upstream_.requestCount(), 0u);
}

TEST_F(ProxyTest, UpstreamRefusedIs502WithErrorSpans) {
  ASSERT_NO_FATAL_FAILURE(startProxy());
  auto r = httpRequest(port(), "GET", "/dead/x");
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 502);
  auto spans = waitSpansSettled(otlp_, 2);
  auto servers = spansOfKind(spans, 2);
  auto clients = spansOfKind(spans, 3);
  ASSERT_EQ(servers.size(), 1u) << describeAll(spans);
  ASSERT_GE(clients.size(), 1u) << describeAll(spans);
  EXPECT_EQ(servers[0].status_code, 2) << servers[0].describe();
  EXPECT_EQ(servers[0].integer("http.response.status_code").value_or(-1), 502)
      << servers[0].describe();
  EXPECT_EQ(servers[0].name, "GET dead");
  for (const auto& c : clients) {
    EXPECT_EQ(c.status_code, 2) << c.describe();
    EXPECT_TRUE(c.has("error.type")) << c.describe();
    EXPECT_EQ(c.parent_span_id, servers[0].span_id);
    EXPECT_EQ(c.trace_id, servers[0].trace_id);
  }
}

TEST_F(ProxyTest, UpstreamClosesWithoutResponseIs502) {
  upstream_.on("/api/close", Behavior::close());
  ASSERT_NO_FATAL_FAILURE(startProxy());
  auto r = httpRequest(port(), "GET", "/api/close");
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 502);
}

TEST_F(ProxyTest, UpstreamStallPastRouteTimeoutIs504) {
  upstream_.onPrefix("/slow", Behavior::stall(milliseconds(5000)));
  ASSERT_NO_FATAL_FAILURE(startProxy());
  auto t0 = Clock::now();
  auto r = httpRequest(port(), "GET", "/slow/x", {}, {}, milliseconds(4000));
  auto elapsed = std::chrono::duration_cast<milliseconds>(Clock::now() - t0);
  ASSERT_TRUE(r) << "no response within 4s (route timeout is 300ms)";
  EXPECT_EQ(r->status, 504);
  EXPECT_GE(elapsed.count(), 250);
  EXPECT_LT(elapsed.count(), 3000);
  auto spans = waitSpansSettled(otlp_, 2);
  auto servers = spansOfKind(spans, 2);
  ASSERT_EQ(servers.size(), 1u) << describeAll(spans);
  EXPECT_EQ(servers[0].status_code, 2) << servers[0].describe();
}

// 8. HTTP/1.1 features.
TEST_F(ProxyTest, KeepAliveTwoRequestsOneConnection) {
  ASSERT_NO_FATAL_FAILURE(startProxy());
  HttpConnection c(port());
  auto a = c.request("GET", "/api/one");
  ASSERT_TRUE(a) << c.lastError();
  auto b = c.request("POST", "/api/two", {}, "payload");
  ASSERT_TRUE(b) << c.lastError();
  EXPECT_EQ(a->status, 200);
  EXPECT_EQ(b->status, 200);
  EXPECT_EQ(b->body, "payload");
  EXPECT_EQ(b->header("x-echo-target").value_or(""), "/api/two");
  EXPECT_EQ(upstream_.requestCount(), 2u);
}

TEST_F(ProxyTest, PipelinedRequestsAnsweredInOrder) {
  ASSERT_NO_FATAL_FAILURE(startProxy());
  HttpConnection c(port());
  std::string bytes = buildRequest("GET", "/api/p1", {}) +
                      buildRequest("POST", "/api/p2", {}, "second") +
                      buildRequest("GET", "/api/p3", {});
  ASSERT_TRUE(c.send(bytes));
  const char* targets[] = {"/api/p1", "/api/p2", "/api/p3"};
  for (const char* t : targets) {
    auto r = c.readResponse();
    ASSERT_TRUE(r) << t << ": " << c.lastError();
    EXPECT_EQ(r->status, 200);
    EXPECT_EQ(r->header("x-echo-target").value_or("<missing>"), t);
    if (std::string(t) == "/api/p2") {
      EXPECT_EQ(r->body, "second");
    }
  }
}

TEST_F(ProxyTest, ChunkedRequestBodyIsEchoed) {
  ASSERT_NO_FATAL_FAILURE(startProxy());
  HttpConnection c(port());
  std::string head = buildRequest("POST", "/api/chunked", {{"Transfer-Encoding", "chunked"}});
  ASSERT_TRUE(c.send(head));
  std::string expected;
  for (int i = 0; i < 5; ++i) {
    std::string piece = "piece-" + std::to_string(i) + std::string(100 * i, 'x');
    expected += piece;
    char len[16];
    std::snprintf(len, sizeof len, "%zx\r\n", piece.size());
    ASSERT_TRUE(c.send(std::string(len) + piece + "\r\n"));
    std::this_thread::sleep_for(milliseconds(20));
  }
  ASSERT_TRUE(c.send("0\r\n\r\n"));
  auto r = c.readResponse();
  ASSERT_TRUE(r) << c.lastError();
  EXPECT_EQ(r->status, 200);
  EXPECT_EQ(r->body, expected);
  auto reqs = upstream_.waitForRequests(1, milliseconds(3000));
  ASSERT_EQ(reqs.size(), 1u);
  EXPECT_EQ(reqs[0].body, expected);
}

TEST_F(ProxyTest, LargePostBodyEchoedIntact) {
  ASSERT_NO_FATAL_FAILURE(startProxy());
  std::string body = patternString(8 * 1024 * 1024, 7);
  HttpConnection c(port());
  auto r = c.request("POST", "/api/upload", {{"Content-Type", "application/octet-stream"}}, body,
                     milliseconds(30000));
  ASSERT_TRUE(r) << c.lastError();
  EXPECT_EQ(r->status, 200);
  EXPECT_EQ(r->body.size(), body.size());
  EXPECT_EQ(firstDiff(r->body, body), -1);
  auto reqs = upstream_.waitForRequests(1, milliseconds(3000));
  ASSERT_EQ(reqs.size(), 1u);
  EXPECT_EQ(reqs[0].body.size(), body.size());
  EXPECT_EQ(firstDiff(reqs[0].body, body), -1);
}

TEST_F(ProxyTest, LargeDownloadIntact) {
  const size_t size = 16 * 1024 * 1024;
  upstream_.on("/api/big", Behavior::large(size));
  ASSERT_NO_FATAL_FAILURE(startProxy());
  HttpConnection c(port());
  auto r = c.request("GET", "/api/big", {}, {}, milliseconds(30000));
  ASSERT_TRUE(r) << c.lastError();
  EXPECT_EQ(r->status, 200);
  ASSERT_EQ(r->body.size(), size);
  EXPECT_EQ(firstDiff(r->body, patternString(size)), -1);
}

TEST_F(ProxyTest, ChunkedResponsePassesThrough) {
  upstream_.on("/api/chunks", Behavior::chunked("alpha-beta-gamma-delta", 4));
  ASSERT_NO_FATAL_FAILURE(startProxy());
  auto r = httpRequest(port(), "GET", "/api/chunks");
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 200);
  EXPECT_EQ(r->body, "alpha-beta-gamma-delta");
}

TEST_F(ProxyTest, Expect100Continue) {
  ASSERT_NO_FATAL_FAILURE(startProxy());
  HttpConnection c(port());
  std::string body = "body-after-continue";
  ASSERT_TRUE(c.send(
      buildRequest("POST", "/api/expect",
                   {{"Expect", "100-continue"}, {"Content-Length", std::to_string(body.size())}})));
  auto interim = c.readResponse(milliseconds(5000));
  ASSERT_TRUE(interim) << "no 100 Continue: " << c.lastError();
  EXPECT_EQ(interim->status, 100);
  ASSERT_TRUE(c.send(body));
  auto r = c.readResponse();
  ASSERT_TRUE(r) << c.lastError();
  EXPECT_EQ(r->status, 200);
  EXPECT_EQ(r->body, body);
}

// An upstream that answers before the request body is in (a refused upload) gets its answer to
// the client at once, with Connection: close: the rest of the body will not be read, so the
// connection cannot carry another request. The proxy closes it once the response is out.
TEST_F(ProxyTest, ResponseBeforeTheRequestBodyEndsClosesTheConnection) {
  upstream_.on("/api/upload", Behavior::earlyReply(413, "too large\n"));
  ASSERT_NO_FATAL_FAILURE(startProxy());
  HttpConnection c(port());
  ASSERT_TRUE(c.send(buildRequest("POST", "/api/upload", {{"Content-Length", "1000000"}}) +
                     std::string(1000, 'x')));
  auto r = c.readResponse(milliseconds(5000));
  ASSERT_TRUE(r) << "the early answer did not come through: " << c.lastError();
  EXPECT_EQ(r->status, 413);
  EXPECT_EQ(r->body, "too large\n");
  EXPECT_EQ(r->header("connection").value_or(""), "close");
  EXPECT_TRUE(c.waitClosed(milliseconds(3000)));
  auto next = httpRequest(port(), "GET", "/api/after");
  ASSERT_TRUE(next);
  EXPECT_EQ(next->status, 200) << "the proxy is still fine";
}

// Trailers of a chunked message cross an HTTP/1.1 hop in both directions (as with Envoy and
// nginx); framing, routing and hop-by-hop fields are left out of them.
TEST_F(ProxyTest, ChunkedRequestTrailersReachTheUpstream) {
  ASSERT_NO_FATAL_FAILURE(startProxy());
  const std::string head =
      buildRequest("POST", "/api/trailers", {{"Transfer-Encoding", "chunked"}});
  const std::string last =
      "0\r\nX-Checksum: abc123\r\nContent-Length: 99\r\nHost: evil.example\r\n"
      "Connection: close\r\nX-Second: 2\r\n\r\n";
  // Trailers in the first read (sent with the head), and arriving after the head went upstream.
  for (bool split : {false, true}) {
    SCOPED_TRACE(split ? "trailers after the head" : "all at once");
    HttpConnection c(port());
    ASSERT_TRUE(c.connected());
    if (split) {
      ASSERT_TRUE(c.send(head + "5\r\nhello\r\n"));
      std::this_thread::sleep_for(milliseconds(50));
      ASSERT_TRUE(c.send(last));
    } else {
      ASSERT_TRUE(c.send(head + "5\r\nhello\r\n" + last));
    }
    auto r = c.readResponse();
    ASSERT_TRUE(r) << c.lastError();
    EXPECT_EQ(r->status, 200);
    EXPECT_EQ(r->body, "hello");
  }
  auto reqs = upstream_.waitForRequests(2, milliseconds(3000));
  ASSERT_EQ(reqs.size(), 2u);
  for (const auto& q : reqs) {
    EXPECT_TRUE(q.chunked);
    EXPECT_EQ(q.body, "hello");
    EXPECT_EQ(q.trailers, (Headers{{"X-Checksum", "abc123"}, {"X-Second", "2"}}))
        << describeHeaders(q.trailers);
    EXPECT_FALSE(q.hasHeader("x-checksum")) << describeHeaders(q.headers);
    EXPECT_NE(q.header("host").value_or(""), "evil.example");
  }
}

TEST_F(ProxyTest, ChunkedResponseTrailersReachTheClient) {
  upstream_.on("/api/resp-trailers", Behavior::chunked("alpha-beta-gamma", 3,
                                                       {{"X-Checksum", "xyz"},
                                                        {"Content-Length", "5"},
                                                        {"Transfer-Encoding", "chunked"},
                                                        {"Keep-Alive", "timeout=1"},
                                                        {"grpc-status", "0"}}));
  ASSERT_NO_FATAL_FAILURE(startProxy());
  TcpSocket s;
  ASSERT_TRUE(s.connect(port()));
  ASSERT_TRUE(s.sendAll(buildRequest("GET", "/api/resp-trailers", {{"Connection", "close"}})));
  const std::string raw = s.readUntilClosed(milliseconds(5000));
  const size_t head_end = raw.find("\r\n\r\n");
  ASSERT_NE(head_end, std::string::npos) << raw;
  const std::string head = raw.substr(0, head_end);
  EXPECT_NE(head.find("Transfer-Encoding: chunked"), std::string::npos) << head;
  EXPECT_EQ(head.find("X-Checksum"), std::string::npos) << "a trailer moved into the head";
  EXPECT_TRUE(raw.ends_with("\r\n0\r\nX-Checksum: xyz\r\ngrpc-status: 0\r\n\r\n")) << raw;

  // An HTTP/1.0 client cannot take trailers: the body ends with the connection, without them.
  TcpSocket old;
  ASSERT_TRUE(old.connect(port()));
  ASSERT_TRUE(old.sendAll("GET /api/resp-trailers HTTP/1.0\r\n\r\n"));
  const std::string raw10 = old.readUntilClosed(milliseconds(5000));
  EXPECT_TRUE(raw10.ends_with("\r\n\r\nalpha-beta-gamma")) << raw10;
  EXPECT_EQ(raw10.find("X-Checksum"), std::string::npos) << raw10;
}

// Issue 13: an upstream's trailer section with framing, connection, authentication and content
// fields (the fuzz finding's "Transfer-Encoding: chng: chunked" among them). The client reads one
// response, whose trailers carry none of them, and its connection goes on.
TEST_F(ProxyTest, ResponseTrailersNeverCarryFramingFields) {
  upstream_.on("/api/evil-trailers", Behavior::chunked("abc", 1,
                                                       {{"grpc-status", "0"},
                                                        {"Transfer-Encoding", "chng: chunked"},
                                                        {"Content-Length", "5"},
                                                        {"Connection", "close"},
                                                        {"Host", "evil.example"},
                                                        {"Authorization", "Bearer leaked"},
                                                        {"Content-Type", "text/evil"},
                                                        {"X-Sum", "1"}}));
  ASSERT_NO_FATAL_FAILURE(startProxy());
  TcpSocket s;
  ASSERT_TRUE(s.connect(port()));
  const std::string get = buildRequest("GET", "/api/evil-trailers", {});
  ASSERT_TRUE(s.sendAll(get));
  std::string raw;
  ASSERT_TRUE(s.readUntil(raw, "\r\n0\r\n", milliseconds(5000))) << raw;
  const size_t last_chunk = raw.find("\r\n0\r\n");
  while (raw.find("\r\n\r\n", last_chunk + 3) == std::string::npos) {  // the trailers' end
    ASSERT_EQ(s.recvSome(raw, milliseconds(5000)), TcpSocket::ReadResult::Data) << raw;
  }
  const std::string head = raw.substr(0, raw.find("\r\n\r\n"));
  EXPECT_NE(head.find("Transfer-Encoding: chunked"), std::string::npos) << raw;
  EXPECT_TRUE(raw.ends_with("abc\r\n0\r\ngrpc-status: 0\r\nX-Sum: 1\r\n\r\n")) << raw;
  // The same connection serves the next request: nothing in the trailers framed or closed it.
  ASSERT_TRUE(s.sendAll(buildRequest("GET", "/api/after", {{"Connection", "close"}})));
  const std::string next = s.readUntilClosed(milliseconds(5000));
  EXPECT_TRUE(next.starts_with("HTTP/1.1 200")) << next;
}

// A client's trailer "Connection: close" (or any framing field llhttp reads there) frames
// nothing: the pipelined request after it is answered, whether the trailers came in the head's
// read or later. It used to end the connection after the first response, or fail the next
// request with a 400, depending on where the reads split.
TEST_F(ProxyTest, RequestTrailerConnectionCloseLeavesTheConnectionAlone) {
  ASSERT_NO_FATAL_FAILURE(startProxy());
  const std::string head = buildRequest("POST", "/api/t", {{"Transfer-Encoding", "chunked"}});
  const std::string last = "0\r\nConnection: close\r\nContent-Length: 3\r\nX-Sum: 1\r\n\r\n";
  const std::string next = buildRequest("GET", "/api/next", {});
  for (bool split : {false, true}) {
    SCOPED_TRACE(split ? "trailers after the head" : "all at once");
    HttpConnection c(port());
    ASSERT_TRUE(c.connected());
    if (split) {
      ASSERT_TRUE(c.send(head + "3\r\nabc\r\n"));
      std::this_thread::sleep_for(milliseconds(50));
      ASSERT_TRUE(c.send(last + next));
    } else {
      ASSERT_TRUE(c.send(head + "3\r\nabc\r\n" + last + next));
    }
    auto first = c.readResponse();
    ASSERT_TRUE(first) << c.lastError();
    EXPECT_EQ(first->status, 200);
    EXPECT_EQ(first->body, "abc");
    EXPECT_TRUE(first->keep_alive) << describeHeaders(first->headers);
    auto second = c.readResponse();
    ASSERT_TRUE(second) << "the pipelined request got no answer: " << c.lastError();
    EXPECT_EQ(second->status, 200);
    EXPECT_EQ(second->header("x-echo-target").value_or(""), "/api/next");
  }
}

TEST_F(ProxyTest, Http10WithoutHostWorksAndCloses) {
  ASSERT_NO_FATAL_FAILURE(startProxy());
  HttpConnection c(port());
  ASSERT_TRUE(c.send("GET /api/old HTTP/1.0\r\nUser-Agent: old/1.0\r\n\r\n"));
  auto r = c.readResponse();
  ASSERT_TRUE(r) << c.lastError();
  EXPECT_EQ(r->status, 200);
  EXPECT_EQ(r->header("x-echo-target").value_or("<missing>"), "/api/old");
  EXPECT_TRUE(c.waitClosed(milliseconds(3000))) << "HTTP/1.0 connection left open";
  EXPECT_EQ(upstream_.requestCount(), 1u);
}

TEST_F(ProxyTest, UpgradeTunnelsBytesBothWays) {
  upstream_.onPrefix("/ws", Behavior::upgrade());
  ASSERT_NO_FATAL_FAILURE(startProxy());
  HttpConnection c(port());
  auto r = c.request("GET", "/ws/chat",
                     {{"Connection", "Upgrade"},
                      {"Upgrade", "websocket"},
                      {"Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ=="},
                      {"Sec-WebSocket-Version", "13"}});
  ASSERT_TRUE(r) << c.lastError();
  ASSERT_EQ(r->status, 101);
  EXPECT_TRUE(iequals(r->header("upgrade").value_or(""), "websocket"));
  auto reqs = upstream_.waitForRequests(1, milliseconds(3000));
  ASSERT_EQ(reqs.size(), 1u);
  EXPECT_TRUE(iequals(reqs[0].header("upgrade").value_or(""), "websocket"))
      << describeHeaders(reqs[0].headers);
  const std::vector<std::string> messages = {"hello-tunnel",
                                             std::string("\x00\x01\xff binary", 10)};
  for (const std::string& msg : messages) {
    ASSERT_TRUE(c.send(msg));
    std::string& got = c.leftover();
    ASSERT_TRUE(c.socket().readUntil(got, msg, milliseconds(3000)))
        << "tunnel echo missing; got " << got.size() << " bytes";
    EXPECT_EQ(got, msg);
    got.clear();
  }
}

}  // namespace
}  // namespace sidetrace::it
