// Access log line formats: exact lines, so a change to the format (a contract for log pipelines)
// shows up as a failing test.

#include "proxy/access_log.h"

#include <gtest/gtest.h>

#include <memory>
#include <string>

#include "tracing/sampler.h"
#include "tracing/tracer.h"

namespace sidetrace::proxy {
namespace {

// 2026-11-23T13:45:01.123Z
constexpr uint64_t kStart = 1'795'441'501'123'456'789ull;

class AccessLogFormatTest : public ::testing::Test {
 protected:
  AccessLogFormatTest()
      : tracer_(
            tracing::makeSampler("always_on", 1.0), nullptr, [] { return kStart; }, 7) {
    route_.name = "orders";
    route_.cluster = "app";
    s_.peer_address = "10.0.0.7";
    s_.peer_port = 51000;
    s_.request.method = "POST";
    s_.request.target = "/orders/42?token=abc&token2";
    s_.request.headers.add("User-Agent", "curl/8 \"x\"");
    s_.request.headers.add("x-request-id", "req-1");
    s_.route = &route_;
    s_.response_status = 201;
    s_.upstream_attempted = true;
    s_.upstream.endpoint_address = "127.0.0.1";
    s_.upstream.endpoint_port = 8080;
    s_.upstream.status = 201;
    s_.upstream_latency_nanos = 1'250'000;
    s_.request_body_bytes = 17;
    s_.response_body_bytes = 2;
  }

  void trace(const tracing::SpanContext* parent) {
    s_.traced = true;
    s_.server_span = tracer_.startServerSpan("POST", parent);
  }

  tracing::Tracer tracer_;
  config::Route route_;
  filters::Stream s_;
  AccessLogTimes times_{kStart, 3'456'000};
};

TEST_F(AccessLogFormatTest, JsonLine) {
  tracing::SpanContext parent;
  parent.trace_id = tracing::TraceId::fromHex("4bf92f3577b34da6a3ce929d0e0e4736");
  parent.span_id = tracing::SpanId::fromHex("00f067aa0ba902b7");
  parent.flags = tracing::kFlagSampled;
  trace(&parent);
  const std::string span = s_.server_span.context().span_id.hex();
  EXPECT_EQ(formatAccessLogJson(s_, "ingress", times_),
            "{\"time\":\"2026-11-23T13:45:01.123Z\",\"trace_id\":"
            "\"4bf92f3577b34da6a3ce929d0e0e4736\",\"span_id\":\"" +
                span +
                "\",\"sampled\":true,\"listener\":\"ingress\",\"route\":\"orders\",\"method\":"
                "\"POST\",\"path\":\"/orders/42?token=REDACTED&REDACTED\","
                "\"protocol\":\"HTTP/1.1\","
                "\"status\":201,\"duration_ms\":3.456,\"upstream\":\"127.0.0.1:8080\","
                "\"upstream_status\":201,\"upstream_ms\":1.250,\"bytes_in\":17,\"bytes_out\":2,"
                "\"client\":\"10.0.0.7\",\"user_agent\":\"curl/8 \\\"x\\\"\",\"request_id\":"
                "\"req-1\",\"error\":\"\"}");
}

TEST_F(AccessLogFormatTest, JsonLineOfAnUntracedFailedRequest) {
  s_.route = nullptr;
  s_.response_status = 502;
  s_.upstream.status = 0;
  s_.upstream.endpoint_address.clear();
  s_.upstream_latency_nanos = 0;
  s_.error_type = "connect_failure";
  s_.request.headers.add("X-Evil", "a\nb");  // not logged; only known fields are
  std::string line = formatAccessLogJson(s_, "ingress", times_);
  EXPECT_NE(line.find("\"trace_id\":\"\",\"span_id\":\"\",\"sampled\":false"), std::string::npos)
      << line;
  EXPECT_NE(line.find("\"route\":\"\""), std::string::npos) << line;
  EXPECT_NE(line.find("\"upstream\":\"\",\"upstream_status\":0,\"upstream_ms\":null"),
            std::string::npos)
      << line;
  EXPECT_NE(line.find("\"error\":\"connect_failure\"}"), std::string::npos) << line;
  EXPECT_EQ(line.find('\n'), std::string::npos);
}

TEST_F(AccessLogFormatTest, JsonEscapesClientBytes) {
  s_.request.target = "/p\"q\\r";
  s_.request.headers.clear();
  s_.request.headers.add("User-Agent", std::string("a\x01\xff", 3));
  std::string line = formatAccessLogJson(s_, "l", times_);
  EXPECT_NE(line.find("\"path\":\"/p\\\"q\\\\r\""), std::string::npos) << line;
  // Control byte escaped, invalid UTF-8 replaced with U+FFFD: the line stays valid JSON.
  EXPECT_NE(line.find("\"user_agent\":\"a\\u0001\xEF\xBF\xBD\""), std::string::npos) << line;
}

TEST_F(AccessLogFormatTest, TextLine) {
  trace(nullptr);
  const auto& ctx = s_.server_span.context();
  EXPECT_EQ(formatAccessLogText(s_, "ingress", times_),
            "10.0.0.7 - - [23/Nov/2026:13:45:01 +0000] \"POST /orders/42?token=REDACTED&REDACTED "
            "HTTP/1.1\" 201 2 \"-\" \"curl/8 \\x22x\\x22\" 0.003 listener=ingress route=orders "
            "upstream=127.0.0.1:8080 upstream_status=201 bytes_in=17 trace_id=" +
                ctx.trace_id.hex() + " span_id=" + ctx.span_id.hex() + " sampled=1");
}

// The Referer is a URL the client came from: its query is redacted like the request's.
TEST_F(AccessLogFormatTest, TextLineRedactsTheReferersQuery) {
  s_.request.headers.add("Referer", "https://shop.example/cart?session=s3cr3t&abcdef123");
  std::string line = formatAccessLogText(s_, "ingress", times_);
  EXPECT_NE(line.find(" 201 2 \"https://shop.example/cart?session=REDACTED&REDACTED\" "),
            std::string::npos)
      << line;
  EXPECT_EQ(line.find("s3cr3t"), std::string::npos) << line;
  EXPECT_EQ(line.find("abcdef123"), std::string::npos) << line;
  s_.request.headers.set("Referer", "https://shop.example/cart");
  line = formatAccessLogText(s_, "ingress", times_);
  EXPECT_NE(line.find(" \"https://shop.example/cart\" "), std::string::npos) << line;
}

TEST_F(AccessLogFormatTest, TextLineWithoutTraceOrRoute) {
  s_.route = nullptr;
  s_.request.version_minor = 0;
  s_.error_type = "timeout";
  std::string line = formatAccessLogText(s_, "ingress", times_);
  EXPECT_NE(line.find(" HTTP/1.0\" 201 "), std::string::npos) << line;
  EXPECT_NE(line.find(" route=- "), std::string::npos) << line;
  EXPECT_NE(line.find(" trace_id=- span_id=- sampled=0 error=timeout"), std::string::npos) << line;
}

TEST_F(AccessLogFormatTest, Http2Protocol) {
  s_.http2 = true;
  EXPECT_NE(formatAccessLogText(s_, "ingress", times_).find(" HTTP/2.0\" 201 "), std::string::npos);
  EXPECT_NE(formatAccessLogJson(s_, "ingress", times_).find("\"protocol\":\"HTTP/2\""),
            std::string::npos);
}

TEST(AccessLogOpenTest, OffWhenNoPathAndClearErrorForBadPath) {
  config::AccessLogConfig off;
  EXPECT_EQ(AccessLog::open(off), nullptr);
  config::AccessLogConfig bad;
  bad.path = "/dev/null/access.log";
  try {
    AccessLog::open(bad);
    FAIL() << "opening an unwritable path must throw";
  } catch (const std::runtime_error& e) {
    EXPECT_NE(std::string(e.what()).find("/dev/null/access.log"), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace sidetrace::proxy
