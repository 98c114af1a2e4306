// The OTLP/HTTP exporter's protocol half against a fake transport and a virtual clock: what it
// sends, which answers it retries and how long it waits, what it counts. (The real transport is
// tested in tests/unit/proxy/otlp_http_client_test.cc, both together in tests/integration.)

#include <gtest/gtest.h>
#include <zlib.h>

#include <chrono>
#include <deque>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "opentelemetry/proto/collector/trace/v1/trace_service.pb.h"
#include "tests/support/otlp_json_check.h"
#include "tracing/export_retry.h"
#include "tracing/exporter.h"
#include "tracing/gzip.h"
#include "tracing/otlp_encode.h"

namespace sidetrace::tracing {
namespace {

using std::chrono::milliseconds;
using TimePoint = std::chrono::steady_clock::time_point;
namespace collector = opentelemetry::proto::collector::trace::v1;

// Virtual time: sleeping and talking to the fake collector advance it; nothing really waits.
struct VirtualTime {
  TimePoint now = TimePoint{} + std::chrono::hours(1);
  std::vector<milliseconds> sleeps;

  ExportClock clock() {
    return {[this] { return now; },
            [this](milliseconds d) {
              sleeps.push_back(d);
              now += d;
            }};
  }
};

struct Call {
  HttpHeaders headers;
  std::string body;
  TimePoint at;
  TimePoint deadline;

  std::string header(const std::string& name) const {
    for (const auto& [k, v] : headers) {
      if (k == name) {
        return v;
      }
    }
    return "<missing>";
  }
  size_t count(const std::string& lower_name) const {
    size_t n = 0;
    for (const auto& [k, v] : headers) {
      std::string lower = k;
      for (char& c : lower) {
        c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
      }
      n += lower == lower_name ? 1 : 0;
    }
    return n;
  }
};

// Answers from a script (then 200 with an empty body); each exchange costs `cost` of virtual
// time, cut at the deadline as the real transport cuts it.
struct FakeCollector {
  VirtualTime* time = nullptr;
  std::deque<HttpExchangeResult> script;
  std::vector<Call> calls;
  milliseconds cost{10};
  int closes = 0;
};

class FakeTransport final : public HttpTransport {
 public:
  explicit FakeTransport(FakeCollector& c) : c_(c) {}
  HttpExchangeResult post(const HttpHeaders& headers, std::string_view body,
                          TimePoint deadline) override {
    c_.calls.push_back({headers, std::string(body), c_.time->now, deadline});
    if (c_.time->now + c_.cost >= deadline) {
      c_.time->now = deadline;
      return {0, "timed out", "", "", ""};
    }
    c_.time->now += c_.cost;
    if (c_.script.empty()) {
      return {200, "", "", "application/x-protobuf", ""};
    }
    HttpExchangeResult r = c_.script.front();
    c_.script.pop_front();
    return r;
  }
  void close() override { ++c_.closes; }

 private:
  FakeCollector& c_;
};

HttpExchangeResult status(int code, std::string retry_after = "") {
  return {code, "", std::move(retry_after), "text/plain", ""};
}

std::string sampleRequest() {
  SpanRecord rec;
  rec.trace_id = TraceId::fromHex("4bf92f3577b34da6a3ce929d0e0e4736");
  rec.span_id = SpanId::fromHex("00f067aa0ba902b7");
  rec.flags = 1;
  rec.name = "GET app";
  rec.kind = SpanKind::Server;
  rec.start_unix_nanos = 1000;
  rec.end_unix_nanos = 2000;
  appendOtlpAttribute(rec.attributes, "http.request.method", std::string_view("GET"));
  std::string run;
  appendOtlpSpan(run, rec);
  rec.span_id = SpanId::fromHex("1111111111111111");
  rec.parent_span_id = SpanId::fromHex("00f067aa0ba902b7");
  rec.kind = SpanKind::Client;
  appendOtlpSpan(run, rec);
  std::string out;
  OtlpRequestEncoder(Resource{{{"service.name", std::string("svc")}}}).encode({run}, out);
  return out;
}

class OtlpHttpExporterTest : public ::testing::Test {
 protected:
  void SetUp() override {
    collector_.time = &time_;
    cfg_.protocol = "http/protobuf";
    cfg_.endpoint = "http://collector:4318/v1/traces";
    cfg_.timeout = milliseconds(10000);
  }
  std::unique_ptr<SpanExporter> make() {
    return makeOtlpHttpExporter(cfg_, std::make_unique<FakeTransport>(collector_), time_.clock());
  }

  config::ExporterConfig cfg_;
  VirtualTime time_;
  FakeCollector collector_;
  const std::string request_ = sampleRequest();
};

TEST_F(OtlpHttpExporterTest, ProtobufBodyAndHeaders) {
  cfg_.headers = {{"authorization", "Bearer s3cret"}, {"x-tenant", "a"}};
  auto e = make();
  const TimePoint start = time_.now;
  EXPECT_EQ(e->exportSpans(request_, 2), ExportResult::Success);
  ASSERT_EQ(collector_.calls.size(), 1u);
  const Call& c = collector_.calls[0];
  EXPECT_EQ(c.body, request_) << "http/protobuf sends the serialized request as it is";
  EXPECT_EQ(c.header("Content-Type"), "application/x-protobuf");
  EXPECT_EQ(c.header("User-Agent"), "sidetrace/" SIDETRACE_VERSION);
  EXPECT_EQ(c.header("authorization"), "Bearer s3cret");
  EXPECT_EQ(c.header("x-tenant"), "a");
  EXPECT_EQ(c.count("content-encoding"), 0u);
  EXPECT_EQ(c.deadline, start + milliseconds(10000)) << "the timeout bounds the whole export";
  EXPECT_TRUE(time_.sleeps.empty());
  EXPECT_EQ(e->rejectedSpans(), 0u);
  EXPECT_EQ(e->exportSpans(request_, 0), ExportResult::Success);
  EXPECT_EQ(collector_.calls.size(), 1u) << "nothing to send, nothing sent";
}

TEST_F(OtlpHttpExporterTest, HeadersThatWouldBreakTheRequestAreNotSent) {
  cfg_.headers = {{"x-ok", "1"},
                  {"x-bad", "a\r\nInjected: yes"},
                  {"bad name", "v"},
                  {"Content-Length", "0"},
                  {"host", "elsewhere"},
                  {"Content-Type", "text/plain"},
                  {"user-agent", "custom/1"}};
  auto e = make();
  ASSERT_EQ(e->exportSpans(request_, 2), ExportResult::Success);
  const Call& c = collector_.calls.at(0);
  EXPECT_EQ(c.header("x-ok"), "1");
  EXPECT_EQ(c.count("x-bad") + c.count("bad name") + c.count("content-length") + c.count("host"),
            0u);
  EXPECT_EQ(c.count("content-type"), 1u);
  EXPECT_EQ(c.header("Content-Type"), "application/x-protobuf");
  EXPECT_EQ(c.count("user-agent"), 1u);
  EXPECT_EQ(c.header("User-Agent"), "custom/1") << "a configured User-Agent replaces ours";
}

TEST_F(OtlpHttpExporterTest, JsonBodyReadsBackWithProtobufJsonParser) {
  cfg_.protocol = "http/json";
  auto e = make();
  ASSERT_EQ(e->exportSpans(request_, 2), ExportResult::Success);
  const Call& c = collector_.calls.at(0);
  EXPECT_EQ(c.header("Content-Type"), "application/json");
  collector::ExportTraceServiceRequest sent;
  ASSERT_EQ(testsupport::parseOtlpJson(c.body, &sent), "") << c.body;
  collector::ExportTraceServiceRequest original;
  ASSERT_TRUE(original.ParseFromString(request_));
  EXPECT_EQ(sent.SerializeAsString(), original.SerializeAsString()) << c.body;
  EXPECT_NE(c.body.find(R"("traceId":"4bf92f3577b34da6a3ce929d0e0e4736")"), std::string::npos);
}

std::string gunzip(const std::string& in) {
  z_stream zs{};
  EXPECT_EQ(inflateInit2(&zs, 15 + 16), Z_OK);
  std::string out(1 << 20, '\0');
  zs.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(in.data()));
  zs.avail_in = static_cast<uInt>(in.size());
  zs.next_out = reinterpret_cast<Bytef*>(out.data());
  zs.avail_out = static_cast<uInt>(out.size());
  int rc = inflate(&zs, Z_FINISH);
  out.resize(zs.total_out);
  inflateEnd(&zs);
  return rc == Z_STREAM_END ? out : "<not a complete gzip stream>";
}

TEST_F(OtlpHttpExporterTest, GzipBodies) {
  cfg_.compression = "gzip";
  auto e = make();
  ASSERT_EQ(e->exportSpans(request_, 2), ExportResult::Success);
  const Call& c = collector_.calls.at(0);
  EXPECT_EQ(c.header("Content-Encoding"), "gzip");
  ASSERT_GE(c.body.size(), 2u);
  EXPECT_EQ(c.body.substr(0, 2), "\x1f\x8b");
  EXPECT_EQ(gunzip(c.body), request_);

  cfg_.protocol = "http/json";
  auto j = make();
  ASSERT_EQ(j->exportSpans(request_, 2), ExportResult::Success);
  collector::ExportTraceServiceRequest sent;
  EXPECT_EQ(testsupport::parseOtlpJson(gunzip(collector_.calls.at(1).body), &sent), "");
  EXPECT_EQ(sent.resource_spans(0).scope_spans(0).spans_size(), 2);
}

TEST(GzipCompressorTest, RoundTripsAndIsReusable) {
  GzipCompressor gz;
  std::string out;
  for (const std::string& in : {std::string(), std::string(100000, 'a'), sampleRequest()}) {
    ASSERT_TRUE(gz.compress(in, out));
    EXPECT_EQ(gunzip(out), in);
  }
  std::string big(300000, '\0');
  for (size_t i = 0; i < big.size(); ++i) {
    big[i] = static_cast<char>((i * 2654435761u) >> 13);  // hardly compressible
  }
  ASSERT_TRUE(gz.compress(big, out));
  EXPECT_EQ(gunzip(out), big);
}

TEST_F(OtlpHttpExporterTest, RetryableAnswersAreRetried) {
  for (HttpExchangeResult first : {status(429), status(502), status(503), status(504),
                                   HttpExchangeResult{0, "connection refused", "", "", ""}}) {
    SCOPED_TRACE(first.status);
    collector_.calls.clear();
    time_.sleeps.clear();
    collector_.script = {first, status(200)};
    auto e = make();
    EXPECT_EQ(e->exportSpans(request_, 2), ExportResult::Success);
    ASSERT_EQ(collector_.calls.size(), 2u);
    EXPECT_EQ(collector_.calls[1].body, collector_.calls[0].body) << "the same request again";
    ASSERT_EQ(time_.sleeps.size(), 1u);
    EXPECT_GE(time_.sleeps[0], milliseconds(80));  // 100 ms ± 20 % jitter
    EXPECT_LE(time_.sleeps[0], milliseconds(120));
  }
}

TEST_F(OtlpHttpExporterTest, OtherAnswersFailAtOnce) {
  for (int code : {400, 401, 403, 404, 413, 500, 501}) {
    SCOPED_TRACE(code);
    collector_.calls.clear();
    collector_.script = {status(code), status(200)};
    auto e = make();
    EXPECT_EQ(e->exportSpans(request_, 2), ExportResult::Failure);
    EXPECT_EQ(collector_.calls.size(), 1u) << "not retried";
    EXPECT_TRUE(time_.sleeps.empty());
  }
}

TEST_F(OtlpHttpExporterTest, BackoffDoublesWithJitterUntilTheTimeout) {
  cfg_.timeout = milliseconds(20000);
  collector_.script.assign(100, status(503));
  auto e = make();
  const TimePoint start = time_.now;
  EXPECT_EQ(e->exportSpans(request_, 2), ExportResult::Failure);
  EXPECT_LE(time_.now, start + milliseconds(20000)) << "the timeout bounds retries included";
  ASSERT_GE(time_.sleeps.size(), 6u);
  milliseconds base{100};
  for (milliseconds s : time_.sleeps) {
    EXPECT_GE(s.count(), base.count() * 8 / 10);
    EXPECT_LE(s.count(), base.count() * 12 / 10);
    base = std::min(base * 2, milliseconds(5000));
  }
  EXPECT_EQ(collector_.calls.size(), time_.sleeps.size() + 1);
  // The last wait would have crossed the deadline: it gave up instead of sleeping past it.
  EXPECT_GE(time_.now + milliseconds(base.count() * 12 / 10), start + milliseconds(20000));
}

TEST_F(OtlpHttpExporterTest, SlowCollectorIsCutAtTheTimeout) {
  cfg_.timeout = milliseconds(1000);
  collector_.cost = milliseconds(400);
  collector_.script.assign(10, status(503));
  auto e = make();
  const TimePoint start = time_.now;
  EXPECT_EQ(e->exportSpans(request_, 2), ExportResult::Failure);
  EXPECT_LE(time_.now, start + milliseconds(1000));
  for (const Call& c : collector_.calls) {
    EXPECT_EQ(c.deadline, start + milliseconds(1000)) << "one deadline for every attempt";
  }
}

TEST_F(OtlpHttpExporterTest, ProcessorDeadlineCutsTheTimeoutShort) {
  cfg_.timeout = milliseconds(10000);
  collector_.script.assign(100, status(503));
  auto e = make();
  const TimePoint start = time_.now;
  e->setDeadline(start + milliseconds(700));  // shutdown's: sooner than the exporter's timeout
  EXPECT_EQ(e->exportSpans(request_, 2), ExportResult::Failure);
  EXPECT_LE(time_.now, start + milliseconds(700));
  ASSERT_FALSE(collector_.calls.empty());
  for (const Call& c : collector_.calls) {
    EXPECT_EQ(c.deadline, start + milliseconds(700));
  }
}

TEST_F(OtlpHttpExporterTest, RetryAfterIsHonoured) {
  collector_.script = {status(429, "1"), status(200)};
  auto e = make();
  EXPECT_EQ(e->exportSpans(request_, 2), ExportResult::Success);
  ASSERT_EQ(time_.sleeps.size(), 1u);
  EXPECT_EQ(time_.sleeps[0], milliseconds(1000)) << "Retry-After: 1 instead of the back-off";

  time_.sleeps.clear();
  collector_.script = {status(503, "3"), status(503, ""), status(200)};
  EXPECT_EQ(e->exportSpans(request_, 2), ExportResult::Success);
  ASSERT_EQ(time_.sleeps.size(), 2u);
  EXPECT_EQ(time_.sleeps[0], milliseconds(3000));
  EXPECT_LE(time_.sleeps[1], milliseconds(240)) << "no Retry-After: the back-off again";

  time_.sleeps.clear();
  collector_.script = {status(502, "4"), status(200)};
  EXPECT_EQ(e->exportSpans(request_, 2), ExportResult::Success);
  ASSERT_EQ(time_.sleeps.size(), 1u);
  EXPECT_LE(time_.sleeps[0], milliseconds(120)) << "Retry-After only counts on 429 and 503";
}

TEST_F(OtlpHttpExporterTest, RetryAfterPastTheTimeoutGivesUpAtOnce) {
  cfg_.timeout = milliseconds(2000);
  collector_.script = {status(429, "5"), status(200)};
  auto e = make();
  EXPECT_EQ(e->exportSpans(request_, 2), ExportResult::Failure);
  EXPECT_EQ(collector_.calls.size(), 1u);
  EXPECT_TRUE(time_.sleeps.empty()) << "waiting 5 s could not end within the 2 s timeout";
}

TEST_F(OtlpHttpExporterTest, PartialSuccessIsCounted) {
  collector::ExportTraceServiceResponse response;
  response.mutable_partial_success()->set_rejected_spans(3);
  response.mutable_partial_success()->set_error_message("over quota");
  collector_.script = {{200, "", "", "application/x-protobuf", response.SerializeAsString()},
                       {200, "", "", "application/x-protobuf", "\xff not protobuf"},
                       {200, "", "", "application/x-protobuf", response.SerializeAsString()}};
  auto e = make();
  EXPECT_EQ(e->exportSpans(request_, 2), ExportResult::Success);
  EXPECT_EQ(e->rejectedSpans(), 3u);
  EXPECT_EQ(e->exportSpans(request_, 2), ExportResult::Success) << "an unreadable 200 is a 200";
  EXPECT_EQ(e->rejectedSpans(), 3u);
  EXPECT_EQ(e->exportSpans(request_, 2), ExportResult::Success);
  EXPECT_EQ(e->rejectedSpans(), 6u);
}

TEST_F(OtlpHttpExporterTest, JsonPartialSuccessIsCounted) {
  cfg_.protocol = "http/json";
  collector_.script = {
      {200, "", "", "application/json",
       R"({"partialSuccess":{"rejectedSpans":"2","errorMessage":"quota"}})"},
      {200, "", "", "application/json; charset=utf-8",
       R"({"partial_success":{"rejected_spans":1}})"},
      {200, "", "", "application/json", R"({"partialSuccess":{},"futureField":true})"},
      {200, "", "", "application/json", "{}"}};
  auto e = make();
  for (int i = 0; i < 4; ++i) {
    EXPECT_EQ(e->exportSpans(request_, 2), ExportResult::Success);
  }
  EXPECT_EQ(e->rejectedSpans(), 3u);
}

TEST_F(OtlpHttpExporterTest, ShutdownClosesTheConnection) {
  auto e = make();
  e->shutdown();
  EXPECT_GE(collector_.closes, 1);
}

TEST(RetryAfterTest, SecondsAndDates) {
  using std::chrono::seconds;
  const auto now = std::chrono::system_clock::from_time_t(1445412450);  // 21 Oct 2015 07:27:30
  EXPECT_EQ(parseRetryAfter("1", now), milliseconds(1000));
  EXPECT_EQ(parseRetryAfter(" 120 ", now), milliseconds(120000));
  EXPECT_EQ(parseRetryAfter("0", now), milliseconds(0));
  EXPECT_EQ(parseRetryAfter("Wed, 21 Oct 2015 07:28:00 GMT", now), milliseconds(30000));
  EXPECT_EQ(parseRetryAfter("Wed, 21 Oct 2015 07:00:00 GMT", now), milliseconds(0));
  EXPECT_EQ(parseRetryAfter("", now), std::nullopt);
  EXPECT_EQ(parseRetryAfter("-1", now), std::nullopt);
  EXPECT_EQ(parseRetryAfter("1.5", now), std::nullopt);
  EXPECT_EQ(parseRetryAfter("soon", now), std::nullopt);
  EXPECT_EQ(parseRetryAfter("Wed, 21 Oct 2015 07:28:00 GMT trailing", now), std::nullopt);
}

TEST(ExportBackoffTest, DoublesToFiveSecondsWithJitter) {
  std::mt19937 rng(42);
  ExportBackoff backoff(rng);
  int64_t base = 100;
  for (int i = 0; i < 12; ++i) {
    int64_t wait = backoff.next().count();
    EXPECT_GE(wait, base * 8 / 10) << i;
    EXPECT_LE(wait, base * 12 / 10) << i;
    base = std::min<int64_t>(base * 2, 5000);
  }
}

TEST(ExporterFactoryTest, HttpProtocolsUseTheGivenTransport) {
  config::ExporterConfig cfg;
  cfg.protocol = "http/json";
  cfg.endpoint = "http://127.0.0.1:4318/v1/traces";
  FakeCollector collector;
  VirtualTime time;
  time.now = TimePoint{};  // the exporter runs on the real clock here: never past its deadline
  collector.time = &time;
  int built = 0;
  HttpTransportFactory factory = [&](const config::ExporterConfig& c) {
    ++built;
    EXPECT_EQ(c.endpoint, "http://127.0.0.1:4318/v1/traces");
    return std::make_unique<FakeTransport>(collector);
  };
  auto e = makeExporter(cfg, factory);
  ASSERT_NE(e, nullptr);
  EXPECT_EQ(built, 1);
  EXPECT_EQ(e->exportSpans(sampleRequest(), 2), ExportResult::Success);
  ASSERT_EQ(collector.calls.size(), 1u);
  EXPECT_EQ(collector.calls[0].header("Content-Type"), "application/json");
  cfg.protocol = "http/protobuf";
  EXPECT_NE(makeExporter(cfg, factory), nullptr);
  EXPECT_THROW(makeExporter(cfg, HttpTransportFactory{}), std::invalid_argument);
}

}  // namespace
}  // namespace sidetrace::tracing
