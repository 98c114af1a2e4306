// Malformed and hostile input on a raw socket: the proxy answers 4xx, closes, and never lets the
// request reach the upstream.

#include <gtest/gtest.h>

#include <chrono>
#include <thread>

#include "tests/integration/harness.h"

namespace sidetrace::it {
namespace {

using std::chrono::milliseconds;
using Clock = std::chrono::steady_clock;

class BadInputTest : public IntegrationTest {
 protected:
  // Sends raw bytes on a new connection; expects `status` and the connection closed.
  void expectRejected(const std::string& bytes, int status) {
    HttpConnection c(port());
    ASSERT_TRUE(c.connected());
    ASSERT_TRUE(c.send(bytes));
    auto r = c.readResponse(milliseconds(5000));
    ASSERT_TRUE(r) << "no response: " << c.lastError();
    EXPECT_EQ(r->status, status);
    EXPECT_TRUE(c.waitClosed(milliseconds(3000))) << "connection left open after " << status;
  }
};

TEST_F(BadInputTest, MalformedRequestLineIs400) {
  ASSERT_NO_FATAL_FAILURE(startProxy());
  expectRejected("this is not http\r\n\r\n", 400);
  expectRejected("GET /api/x HTTP/1.1 extra\r\nHost: a\r\n\r\n", 400);
  EXPECT_EQ(upstream_.requestCount(), 0u);
  EXPECT_EQ(upstream_.connectionCount(), 0u);
}

TEST_F(BadInputTest, OversizedHeaderBlockIs431) {
  ProxyConfig cfg;
  cfg.limits_extra = "max_request_headers_bytes: 4096";
  ASSERT_NO_FATAL_FAILURE(startProxy(cfg));
  // Control: a request just under the limit passes.
  auto ok = httpRequest(port(), "GET", "/api/small", {{"X-Pad", std::string(2000, 'a')}});
  ASSERT_TRUE(ok);
  EXPECT_EQ(ok->status, 200);
  expectRejected(buildRequest("GET", "/api/big-headers", {{"X-Big", std::string(8000, 'b')}}), 431);
  // Many small headers count too (fewer than max_request_headers_count: the bytes decide).
  Headers many;
  for (int i = 0; i < 60; ++i) {
    many.emplace_back("X-H" + std::to_string(i), std::string(80, 'h'));
  }
  expectRejected(buildRequest("GET", "/api/many-headers", many), 431);
  EXPECT_EQ(upstream_.requestCount(), 1u);
}

// Parsers are pooled per worker (proxy/request_state.h) and outlive the connection that used them:
// a reload's header limit applies to every request that starts after it, on a kept-alive
// connection too, in both directions.
TEST_F(BadInputTest, ReloadedHeaderLimitAppliesToTheNextRequest) {
  ProxyConfig cfg;
  cfg.workers = 1;
  cfg.limits_extra = "max_request_headers_bytes: 4096";
  ASSERT_NO_FATAL_FAILURE(startProxy(cfg));
  HttpConnection c(port());
  ASSERT_TRUE(c.connected());
  const Headers big = {{"X-Big", std::string(8000, 'b')}};
  auto small = c.request("GET", "/api/small", {{"X-Pad", std::string(2000, 'a')}});
  ASSERT_TRUE(small) << c.lastError();
  EXPECT_EQ(small->status, 200);

  cfg.limits_extra = "max_request_headers_bytes: 65536";
  ASSERT_NO_FATAL_FAILURE(reloadYaml(standardConfigYaml(cfg)));
  auto grown = c.request("GET", "/api/big", big);
  ASSERT_TRUE(grown) << c.lastError();
  EXPECT_EQ(grown->status, 200) << "the kept-alive connection still parses under the old limit";
  auto fresh = httpRequest(port(), "GET", "/api/big", big);
  ASSERT_TRUE(fresh);
  EXPECT_EQ(fresh->status, 200);

  cfg.limits_extra = "max_request_headers_bytes: 4096";
  ASSERT_NO_FATAL_FAILURE(reloadYaml(standardConfigYaml(cfg)));
  auto shrunk = c.request("GET", "/api/big", big);
  ASSERT_TRUE(shrunk) << c.lastError();
  EXPECT_EQ(shrunk->status, 431);
  expectRejected(buildRequest("GET", "/api/big", big), 431);
}

// The per-field bytes (": " and CRLF) are counted when a field ends; a head that crosses the limit
// right there is as much too large as any other (it used to get 400: that error took another path).
TEST_F(BadInputTest, HeadCrossingTheLimitAtAFieldEndIs431) {
  ProxyConfig cfg;
  cfg.limits_extra = "max_request_headers_bytes: 4096";
  ASSERT_NO_FATAL_FAILURE(startProxy(cfg));
  int rejected = 0;
  for (size_t pad = 4040; pad <= 4080; ++pad) {
    SCOPED_TRACE(pad);
    HttpConnection c(port());
    ASSERT_TRUE(c.connected());
    ASSERT_TRUE(c.send(buildRequest("GET", "/api/edge", {{"X-Pad", std::string(pad, 'p')}})));
    auto r = c.readResponse(milliseconds(5000));
    ASSERT_TRUE(r) << "no response: " << c.lastError();
    EXPECT_TRUE(r->status == 200 || r->status == 431) << r->status;
    rejected += r->status == 431 ? 1 : 0;
  }
  EXPECT_GT(rejected, 0);
}

// limits.max_request_headers_count (100 by default) bounds the fields of a head: the 101st ends the
// request with 431 as it arrives, so no filter ever walks thousands of fields.
TEST_F(BadInputTest, TooManyHeaderFieldsIs431) {
  ASSERT_NO_FATAL_FAILURE(startProxy());
  Headers fields;  // with Host: 100 fields
  for (int i = 0; i < 99; ++i) {
    fields.emplace_back("X-F" + std::to_string(i), "1");
  }
  auto ok = httpRequest(port(), "GET", "/api/hundred", fields);
  ASSERT_TRUE(ok);
  EXPECT_EQ(ok->status, 200);
  fields.emplace_back("X-F99", "1");
  expectRejected(buildRequest("GET", "/api/hundred-and-one", fields), 431);
  // The head that made header stripping quadratic: 15,000 Connection names and 5,000 fields,
  // inside the 60 KiB byte limit.
  std::string names = "a";
  for (int i = 1; i < 15000; ++i) {
    names += ",a";
  }
  Headers attack{{"Connection", names}};
  for (int i = 0; i < 5000; ++i) {
    attack.emplace_back("b", "");
  }
  const std::string bytes = buildRequest("GET", "/api/stripping", attack);
  ASSERT_LT(bytes.size(), 60u * 1024);
  expectRejected(bytes, 431);
  EXPECT_EQ(upstream_.requestCount(), 1u);
}

// RFC 9112 §3.2: an HTTP/1.1 request carries exactly one Host, any request at most one. With two,
// the proxy could route on one while the application serves the other.
TEST_F(BadInputTest, MissingOrRepeatedHostIs400) {
  ASSERT_NO_FATAL_FAILURE(startProxy());
  expectRejected("GET /api/no-host HTTP/1.1\r\nUser-Agent: t\r\n\r\n", 400);
  expectRejected("GET http://a/api/absolute HTTP/1.1\r\n\r\n", 400);
  expectRejected("GET /api/two-hosts HTTP/1.1\r\nHost: a\r\nhost: b\r\n\r\n", 400);
  expectRejected("GET /api/same-twice HTTP/1.1\r\nHost: a\r\nHost: a\r\n\r\n", 400);
  expectRejected("GET /api/two-hosts-10 HTTP/1.0\r\nHost: a\r\nHost: b\r\n\r\n", 400);
  EXPECT_EQ(upstream_.requestCount(), 0u);
  EXPECT_EQ(upstream_.connectionCount(), 0u);
}

// Framing and host shapes the nginx/HAProxy differential (tests/fuzz/differential.py) found
// sidetrace forwarding while both refuse: a Transfer-Encoding other than one chunked coding (also
// on an Upgrade request, where llhttp does not check it), an HTTP/1.0 request with one, and an
// absolute-form target whose Host names another host. Each is 400 and closed, never forwarded;
// an absolute-form request whose Host agrees goes through in origin-form.
TEST_F(BadInputTest, FramingAndHostShapesTheReferencesRefuseAre400) {
  ASSERT_NO_FATAL_FAILURE(startProxy());
  expectRejected(
      "GET /api/ws HTTP/1.1\r\nTransfer-Encoding: xchunked\r\nHost: a\r\nConnection: Upgrade\r\n"
      "Upgrade: websocket\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
      "Sec-WebSocket-Version: 13\r\n\r\n",
      400);
  expectRejected("POST /api/gz HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip\r\n\r\nxx", 400);
  // An unknown coding in a field of its own before the chunked one (differential finding).
  expectRejected(
      "POST /api/upload HTTP/1.1\r\nTransfer-Encoding: xchunked\r\nHost: a\r\n"
      "Transfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
      400);
  expectRejected(
      "POST /api/gzc HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip, chunked\r\n\r\n"
      "5\r\nhello\r\n0\r\n\r\n",
      400);
  expectRejected(
      "GET /api/te10 HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"
      "GET /api/smuggled HTTP/1.1\r\nHost: a\r\n\r\n",
      400);
  expectRejected("GET http://a.example:8080/api/abs HTTP/1.1\r\nHost: a.example:808\r\n\r\n", 400);
  EXPECT_EQ(upstream_.requestCount(), 0u);
  HttpConnection c(port());
  ASSERT_TRUE(c.send("GET http://A.example:80/api/abs?q=1 HTTP/1.1\r\nHost: a.example\r\n\r\n"));
  auto ok = c.readResponse(milliseconds(5000));
  ASSERT_TRUE(ok) << c.lastError();
  EXPECT_EQ(ok->status, 200);
  auto got = upstream_.waitForRequests(1, milliseconds(3000));
  ASSERT_EQ(got.size(), 1u);
  EXPECT_EQ(got[0].target, "/api/abs?q=1");
}

// Listeners are reverse proxies: CONNECT gets 405 even where a route would match it, and no
// tunnel to the upstream is opened.
TEST_F(BadInputTest, ConnectIs405AndNeverForwarded) {
  std::string y = standardConfigYaml({});
  const std::string routes_key = "    routes:\n";
  y.insert(y.find(routes_key) + routes_key.size(),
           "      - name: any-connect\n        match: { method: CONNECT }\n        cluster: app\n");
  ASSERT_NO_FATAL_FAILURE(startProxyYaml(y));
  const std::string target = "127.0.0.1:" + std::to_string(upstream_.port());
  expectRejected("CONNECT " + target + " HTTP/1.1\r\nHost: " + target + "\r\n\r\n", 405);
  std::this_thread::sleep_for(milliseconds(200));
  EXPECT_EQ(upstream_.requestCount(), 0u);
  EXPECT_EQ(upstream_.connectionCount(), 0u);
}

// A chunked request's trailer section has the head's limit: over it, 431, whether it arrives with
// the head or after the head went upstream (that upstream request is abandoned, never completed).
TEST_F(BadInputTest, OversizedTrailerSectionIs431) {
  ProxyConfig cfg;
  cfg.limits_extra = "max_request_headers_bytes: 4096";
  ASSERT_NO_FATAL_FAILURE(startProxy(cfg));
  const std::string head =
      buildRequest("POST", "/api/big-trailers", {{"Transfer-Encoding", "chunked"}});
  const std::string trailers = "0\r\nX-Big: " + std::string(8000, 't') + "\r\n\r\n";
  expectRejected(head + "2\r\nhi\r\n" + trailers, 431);

  HttpConnection c(port());
  ASSERT_TRUE(c.connected());
  ASSERT_TRUE(c.send(head + "2\r\nhi\r\n"));
  std::this_thread::sleep_for(milliseconds(100));
  ASSERT_TRUE(c.send(trailers));
  auto r = c.readResponse(milliseconds(5000));
  ASSERT_TRUE(r) << "no response: " << c.lastError();
  EXPECT_EQ(r->status, 431);
  EXPECT_TRUE(c.waitClosed(milliseconds(3000)));
  std::this_thread::sleep_for(milliseconds(300));
  EXPECT_EQ(upstream_.requestCount(), 0u);
}

TEST_F(BadInputTest, SlowlorisGets408) {
  ProxyConfig cfg;
  cfg.limits_extra = "request_header_timeout: 500ms";
  ASSERT_NO_FATAL_FAILURE(startProxy(cfg));
  HttpConnection c(port());
  ASSERT_TRUE(c.connected());
  auto t0 = Clock::now();
  ASSERT_TRUE(c.send("GET /api/slow HTTP/1.1\r\nHost: a\r\nX-Partial: "));
  auto r = c.readResponse(milliseconds(5000));
  auto elapsed = std::chrono::duration_cast<milliseconds>(Clock::now() - t0);
  ASSERT_TRUE(r) << "no 408 within 5s: " << c.lastError();
  EXPECT_EQ(r->status, 408);
  EXPECT_GE(elapsed.count(), 400);
  EXPECT_LT(elapsed.count(), 3000);
  EXPECT_TRUE(c.waitClosed(milliseconds(3000)));
  EXPECT_EQ(upstream_.requestCount(), 0u);
}

struct SmugglingCase {
  const char* name;
  const char* bytes;
};

const SmugglingCase kSmugglingCases[] = {
    {"ContentLengthPlusTransferEncoding",
     "POST /api/s1 HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n"
     "\r\n0\r\n\r\n"},
    {"TwoDifferingContentLength",
     "POST /api/s2 HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello!"},
    {"BadChunkSize",
     "POST /api/s3 HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nhello\r\n"
     "0\r\n\r\n"},
    {"ObsFoldHeader", "GET /api/s4 HTTP/1.1\r\nHost: a\r\nX-Folded: a\r\n b\r\n\r\n"},
    {"BareLfLineEndings", "GET /api/s5 HTTP/1.1\nHost: a\n\n"},
    {"SpaceBeforeColon", "GET /api/s6 HTTP/1.1\r\nHost : a\r\n\r\n"},
    {"BareLfEndingTheHead", "GET /api/s7 HTTP/1.1\r\nHost: a\r\n\n"},
    {"BareLfEndingTheTrailers",
     "POST /api/s8 HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\n"},
};

// Names the case in gtest output instead of dumping the struct's bytes.
void PrintTo(const SmugglingCase& c, std::ostream* os) {
  *os << c.name;
}

class SmugglingTest : public BadInputTest, public ::testing::WithParamInterface<SmugglingCase> {};

// Each attempt: 400, connection closed, and the upstream got nothing at all.
TEST_P(SmugglingTest, RejectedAndNeverForwarded) {
  ASSERT_NO_FATAL_FAILURE(startProxy());
  expectRejected(GetParam().bytes, 400);
  std::this_thread::sleep_for(milliseconds(300));
  std::string reached;
  for (const auto& q : upstream_.requests()) {
    reached += " " + q.method + " " + q.target + "\n" + describeHeaders(q.headers);
  }
  EXPECT_EQ(upstream_.requestCount(), 0u) << "the rejected request reached the upstream:\n"
                                          << reached;
  EXPECT_EQ(upstream_.bytesReceived(), 0u) << "upstream received bytes of a rejected request";
  // The proxy still serves normal traffic.
  auto ok = httpRequest(port(), "GET", "/api/after");
  ASSERT_TRUE(ok);
  EXPECT_EQ(ok->status, 200);
}

INSTANTIATE_TEST_SUITE_P(Cases, SmugglingTest, ::testing::ValuesIn(kSmugglingCases),
                         [](const auto& info) { return std::string(info.param.name); });

}  // namespace
}  // namespace sidetrace::it
