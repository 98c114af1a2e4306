#include <gtest/gtest.h>

#include "tracing/exporter.h"

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

TEST(ConsoleExporterTest, WritesToStdout) {
  SpanData d;
  d.name = "to-stdout";
  testing::internal::CaptureStdout();
  auto e = makeConsoleExporter();
  EXPECT_EQ(e->exportSpans({d, d}, Resource{}), ExportResult::Success);
  std::string out = testing::internal::GetCapturedStdout();
  EXPECT_EQ(out, formatConsoleSpan(d, Resource{}) + formatConsoleSpan(d, Resource{}));
}

TEST(ExporterFactoryTest, ByProtocol) {
  config::ExporterConfig cfg;
  cfg.protocol = "none";
  EXPECT_EQ(makeExporter(cfg), nullptr);
  cfg.protocol = "console";
  EXPECT_NE(makeExporter(cfg), nullptr);
  cfg.protocol = "grpc";
  cfg.endpoint = "http://127.0.0.1:1";
  EXPECT_NE(makeExporter(cfg), nullptr);
  cfg.protocol = "http/protobuf";
  EXPECT_THROW(makeExporter(cfg), std::invalid_argument);
  cfg.protocol = "http/json";
  EXPECT_THROW(makeExporter(cfg), std::invalid_argument);
  cfg.protocol = "zipkin";
  EXPECT_THROW(makeExporter(cfg), std::invalid_argument);
}

TEST(OtlpGrpcExporterTest, UnreachableCollectorFailsWithinTimeout) {
  config::ExporterConfig cfg;
  cfg.protocol = "grpc";
  cfg.endpoint = "127.0.0.1:1";  // nothing listens on port 1
  cfg.timeout = config::Duration{400};
  cfg.headers = {{"X-Api-Token", "t"}};
  auto e = makeOtlpGrpcExporter(cfg);
  SpanData d;
  d.trace_id = TraceId::fromHex("4bf92f3577b34da6a3ce929d0e0e4736");
  d.span_id = SpanId::fromHex("00f067aa0ba902b7");
  auto start = std::chrono::steady_clock::now();
  EXPECT_EQ(e->exportSpans({d}, Resource{}), ExportResult::Failure);
  auto took = std::chrono::steady_clock::now() - start;
  EXPECT_LT(took, std::chrono::milliseconds(1500));
  EXPECT_EQ(e->exportSpans({}, Resource{}), ExportResult::Success);
}

}  // namespace
}  // namespace sidetrace::tracing
