#include <gtest/gtest.h>

#include <chrono>
#include <stdexcept>
#include <string>
#include <vector>

#include "tracing/exporter.h"
#include "tracing/otlp_encode.h"

namespace sidetrace::tracing {
namespace {

TEST(ConsoleExporterTest, ExactLineFormat) {
  SpanData d;
  d.trace_id = TraceId::fromHex("4bf92f3577b34da6a3ce929d0e0e4736");
  d.span_id = SpanId::fromHex("00f067aa0ba902b7");
  d.parent_span_id = SpanId::fromHex("1111111111111111");
  d.name = "GET \"q\"\\";
  d.kind = SpanKind::Client;
  d.start_unix_nanos = 1000000;
  d.end_unix_nanos = 3500000;
  d.status = StatusCode::Error;
  d.status_message = "line\nbreak\x01";
  d.attributes = {{"s", std::string("v")}, {"i", int64_t{-3}}, {"d", 0.5}, {"b", false}};
  Resource r{{{"service.name", std::string("orders")}}};
  EXPECT_EQ(
      formatConsoleSpan(d, r),
      "{\"trace_id\":\"4bf92f3577b34da6a3ce929d0e0e4736\",\"span_id\":\"00f067aa0ba902b7\","
      "\"parent_span_id\":\"1111111111111111\",\"name\":\"GET \\\"q\\\"\\\\\",\"kind\":\"CLIENT\","
      "\"start_unix_nanos\":1000000,\"end_unix_nanos\":3500000,\"duration_ms\":2.5,"
      "\"status\":\"ERROR\",\"status_message\":\"line\\nbreak\\u0001\",\"service\":\"orders\","
      "\"attributes\":{\"s\":\"v\",\"i\":-3,\"d\":0.5,\"b\":false}}\n");
}

TEST(ConsoleExporterTest, RootSpanDefaults) {
  SpanData d;
  d.trace_id = TraceId::fromHex("4bf92f3577b34da6a3ce929d0e0e4736");
  d.span_id = SpanId::fromHex("00f067aa0ba902b7");
  d.kind = SpanKind::Server;
  d.name = "x";
  EXPECT_EQ(formatConsoleSpan(d, Resource{}),
            "{\"trace_id\":\"4bf92f3577b34da6a3ce929d0e0e4736\",\"span_id\":\"00f067aa0ba902b7\","
            "\"parent_span_id\":\"\",\"name\":\"x\",\"kind\":\"SERVER\",\"start_unix_nanos\":0,"
            "\"end_unix_nanos\":0,\"duration_ms\":0,\"status\":\"UNSET\",\"status_message\":\"\","
            "\"service\":\"\",\"attributes\":{}}\n");
}

TEST(ConsoleExporterTest, LinksFollowTheAttributes) {
  SpanData d;
  d.trace_id = TraceId::fromHex("4bf92f3577b34da6a3ce929d0e0e4736");
  d.span_id = SpanId::fromHex("00f067aa0ba902b7");
  d.kind = SpanKind::Client;
  d.name = "GET";
  d.links = {
      {TraceId::fromHex("0af7651916cd43dd8448eb211c80319c"), SpanId::fromHex("b7ad6b7169203331")},
      {TraceId::fromHex("4bf92f3577b34da6a3ce929d0e0e4736"), SpanId::fromHex("2222222222222222")}};
  EXPECT_EQ(
      formatConsoleSpan(d, Resource{}),
      "{\"trace_id\":\"4bf92f3577b34da6a3ce929d0e0e4736\",\"span_id\":\"00f067aa0ba902b7\","
      "\"parent_span_id\":\"\",\"name\":\"GET\",\"kind\":\"CLIENT\",\"start_unix_nanos\":0,"
      "\"end_unix_nanos\":0,\"duration_ms\":0,\"status\":\"UNSET\",\"status_message\":\"\","
      "\"service\":\"\",\"attributes\":{},\"links\":["
      "{\"trace_id\":\"0af7651916cd43dd8448eb211c80319c\",\"span_id\":\"b7ad6b7169203331\"},"
      "{\"trace_id\":\"4bf92f3577b34da6a3ce929d0e0e4736\",\"span_id\":\"2222222222222222\"}]}\n");
}

// A request as the batch processor frames it: spans encoded with appendOtlpSpan behind the
// resource.
template <typename... Records>
std::string request(const Resource& resource, const Records&... spans) {
  std::string run;
  (appendOtlpSpan(run, spans), ...);
  std::string out;
  OtlpRequestEncoder(resource).encode({run}, out);
  return out;
}

TEST(ConsoleExporterTest, WritesToStdout) {
  SpanRecord rec;
  rec.trace_id = TraceId::fromHex("4bf92f3577b34da6a3ce929d0e0e4736");
  rec.span_id = SpanId::fromHex("00f067aa0ba902b7");
  rec.flags = 1;
  rec.name = "to-stdout";
  rec.kind = SpanKind::Server;
  rec.start_unix_nanos = 1000000;
  rec.end_unix_nanos = 3000000;
  appendOtlpAttribute(rec.attributes, "k", "v");
  appendOtlpAttribute(rec.attributes, "n", int64_t{-3});
  rec.status = StatusCode::Error;
  rec.status_message = "boom";
  SpanRecord child;
  child.trace_id = rec.trace_id;
  child.flags = 1;
  child.start_unix_nanos = 1000000;
  child.end_unix_nanos = 3000000;
  child.span_id = SpanId::fromHex("1111111111111111");
  child.parent_span_id = rec.span_id;
  child.name = "child";
  child.kind = SpanKind::Client;
  appendOtlpLink(child.links, TraceId::fromHex("0af7651916cd43dd8448eb211c80319c"),
                 SpanId::fromHex("b7ad6b7169203331"), 1);
  const Resource r{{{"service.name", std::string("svc")}}};

  // What the lines must show, built independently of the wire encoding.
  SpanData d;
  d.trace_id = rec.trace_id;
  d.span_id = rec.span_id;
  d.flags = 1;
  d.name = "to-stdout";
  d.kind = SpanKind::Server;
  d.start_unix_nanos = 1000000;
  d.end_unix_nanos = 3000000;
  d.attributes = {{"k", std::string("v")}, {"n", int64_t{-3}}};
  d.status = StatusCode::Error;
  d.status_message = "boom";
  SpanData c;
  c.trace_id = rec.trace_id;
  c.span_id = child.span_id;
  c.parent_span_id = rec.span_id;
  c.flags = 1;
  c.name = "child";
  c.kind = SpanKind::Client;
  c.start_unix_nanos = 1000000;
  c.end_unix_nanos = 3000000;
  c.links = {
      {TraceId::fromHex("0af7651916cd43dd8448eb211c80319c"), SpanId::fromHex("b7ad6b7169203331")}};

  const std::string bytes = request(r, rec, child);
  testing::internal::CaptureStdout();
  auto e = makeConsoleExporter();
  EXPECT_EQ(e->exportSpans(bytes, 2), ExportResult::Success);
  std::string out = testing::internal::GetCapturedStdout();
  EXPECT_EQ(out, formatConsoleSpan(d, r) + formatConsoleSpan(c, r));
  EXPECT_NE(out.find("\"service\":\"svc\""), std::string::npos);
  EXPECT_NE(out.find("\"links\":[{\"trace_id\":\"0af7651916cd43dd8448eb211c80319c\""),
            std::string::npos);
}

TEST(ConsoleExporterTest, EmptyAndInvalidRequests) {
  auto e = makeConsoleExporter();
  testing::internal::CaptureStdout();
  EXPECT_EQ(e->exportSpans(request(Resource{}), 0), ExportResult::Success);
  EXPECT_EQ(e->exportSpans(std::string("\xff\xff\xff", 3), 1), ExportResult::Failure);
  EXPECT_EQ(testing::internal::GetCapturedStdout(), "");
}

TEST(ExporterFactoryTest, ByProtocol) {
  config::ExporterConfig cfg;
  cfg.protocol = "none";
  EXPECT_EQ(makeExporter(cfg, {}), nullptr);
  cfg.protocol = "console";
  EXPECT_NE(makeExporter(cfg, {}), nullptr);
  cfg.protocol = "grpc";
  cfg.endpoint = "http://127.0.0.1:1";
  EXPECT_NE(makeExporter(cfg, {}), nullptr);
  cfg.protocol = "zipkin";
  EXPECT_THROW(makeExporter(cfg, {}), std::invalid_argument);
  // http/protobuf and http/json: otlp_http_exporter_test.cc
}

TEST(OtlpGrpcExporterTest, UnreachableCollectorFailsWithinTimeout) {
  config::ExporterConfig cfg;
  cfg.protocol = "grpc";
  cfg.endpoint = "127.0.0.1:1";  // nothing listens on port 1
  cfg.timeout = config::Duration{400};
  cfg.headers = {{"X-Api-Token", "t"}};
  auto e = makeOtlpGrpcExporter(cfg);
  SpanRecord rec;
  rec.trace_id = TraceId::fromHex("4bf92f3577b34da6a3ce929d0e0e4736");
  rec.span_id = SpanId::fromHex("00f067aa0ba902b7");
  rec.name = "x";
  rec.kind = SpanKind::Server;
  const std::string bytes = request(Resource{{{"service.name", std::string("svc")}}}, rec);
  auto start = std::chrono::steady_clock::now();
  EXPECT_EQ(e->exportSpans(bytes, 1), ExportResult::Failure);
  auto took = std::chrono::steady_clock::now() - start;
  EXPECT_GE(took, std::chrono::milliseconds(50));  // it did try, and retry after a back-off
  EXPECT_LT(took, std::chrono::milliseconds(1500));
  start = std::chrono::steady_clock::now();
  EXPECT_EQ(e->exportSpans("", 0), ExportResult::Success);  // nothing to send: no call at all
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::milliseconds(100));
}

// tracing.exporter.tls.ca_file (OTEL_EXPORTER_OTLP_CERTIFICATE) replaces gRPC's roots; a file that
// cannot be read stops the start instead of silently trusting the defaults.
TEST(OtlpGrpcExporterTest, UnreadableCaFileStopsTheStart) {
  config::ExporterConfig cfg;
  cfg.protocol = "grpc";
  cfg.endpoint = "https://127.0.0.1:1";
  cfg.tls.ca_file = "/nonexistent/ca.pem";
  EXPECT_THROW(makeOtlpGrpcExporter(cfg), std::runtime_error);
  cfg.endpoint = "http://127.0.0.1:1";  // plaintext: no CA needed
  EXPECT_NE(makeOtlpGrpcExporter(cfg), nullptr);
}

}  // namespace
}  // namespace sidetrace::tracing
