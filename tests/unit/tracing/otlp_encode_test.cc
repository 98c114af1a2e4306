#include "tracing/otlp_encode.h"

#include <gtest/gtest.h>

#include "opentelemetry/proto/collector/trace/v1/trace_service.pb.h"

namespace sidetrace::tracing {
namespace {

namespace collector = opentelemetry::proto::collector::trace::v1;
namespace otlp = opentelemetry::proto::trace::v1;

SpanData sample() {
  SpanData d;
  d.trace_id = TraceId::fromHex("4bf92f3577b34da6a3ce929d0e0e4736");
  d.span_id = SpanId::fromHex("00f067aa0ba902b7");
  d.parent_span_id = SpanId::fromHex("1111111111111111");
  d.tracestate = "rojo=1";
  d.flags = 1;
  d.name = "GET orders";
  d.kind = SpanKind::Client;
  d.start_unix_nanos = 1700000000000000000ULL;
  d.end_unix_nanos = 1700000000123456789ULL;
  d.attributes = {{"s", std::string("v")}, {"i", int64_t{-7}}, {"d", 2.5}, {"b", true}};
  d.status = StatusCode::Error;
  d.status_message = "upstream reset";
  return d;
}

Resource resource() {
  return Resource{{{"service.name", std::string("orders")}, {"pid", int64_t{42}}}};
}

TEST(OtlpEncodeTest, MapsEveryField) {
  collector::ExportTraceServiceRequest req;
  encodeOtlp({sample()}, resource(), &req);
  ASSERT_EQ(req.resource_spans_size(), 1);
  const auto& rs = req.resource_spans(0);
  ASSERT_EQ(rs.resource().attributes_size(), 2);
  EXPECT_EQ(rs.resource().attributes(0).key(), "service.name");
  EXPECT_EQ(rs.resource().attributes(0).value().string_value(), "orders");
  EXPECT_EQ(rs.resource().attributes(1).value().int_value(), 42);
  ASSERT_EQ(rs.scope_spans_size(), 1);
  EXPECT_EQ(rs.scope_spans(0).scope().name(), "sidetrace");
  EXPECT_EQ(rs.scope_spans(0).scope().version(), SIDETRACE_VERSION);
  ASSERT_EQ(rs.scope_spans(0).spans_size(), 1);
  const otlp::Span& s = rs.scope_spans(0).spans(0);
  EXPECT_EQ(s.trace_id(),
            std::string("\x4b\xf9\x2f\x35\x77\xb3\x4d\xa6\xa3\xce\x92\x9d\x0e\x0e\x47\x36", 16));
  EXPECT_EQ(s.span_id(), std::string("\x00\xf0\x67\xaa\x0b\xa9\x02\xb7", 8));
  EXPECT_EQ(s.parent_span_id(), std::string(8, '\x11'));
  EXPECT_EQ(s.trace_state(), "rojo=1");
  EXPECT_EQ(s.flags(), 1u);
  EXPECT_EQ(s.name(), "GET orders");
  EXPECT_EQ(s.kind(), otlp::Span::SPAN_KIND_CLIENT);
  EXPECT_EQ(s.start_time_unix_nano(), 1700000000000000000ULL);
  EXPECT_EQ(s.end_time_unix_nano(), 1700000000123456789ULL);
  ASSERT_EQ(s.attributes_size(), 4);
  EXPECT_EQ(s.attributes(0).value().string_value(), "v");
  EXPECT_EQ(s.attributes(1).value().int_value(), -7);
  EXPECT_EQ(s.attributes(2).value().double_value(), 2.5);
  EXPECT_TRUE(s.attributes(3).value().bool_value());
  EXPECT_EQ(s.attributes(3).value().value_case(),
            opentelemetry::proto::common::v1::AnyValue::kBoolValue);
  EXPECT_EQ(s.status().code(), otlp::Status::STATUS_CODE_ERROR);
  EXPECT_EQ(s.status().message(), "upstream reset");
}

TEST(OtlpEncodeTest, RootSpanHasEmptyParentAndUnsetStatusIsAbsent) {
  SpanData d = sample();
  d.parent_span_id = SpanId{};
  d.status = StatusCode::Unset;
  d.status_message.clear();
  d.kind = SpanKind::Server;
  collector::ExportTraceServiceRequest req;
  encodeOtlp({d}, resource(), &req);
  const otlp::Span& s = req.resource_spans(0).scope_spans(0).spans(0);
  EXPECT_TRUE(s.parent_span_id().empty());
  EXPECT_FALSE(s.has_status());
  EXPECT_EQ(s.kind(), otlp::Span::SPAN_KIND_SERVER);
}

TEST(OtlpEncodeTest, ReuseClearsPreviousContent) {
  collector::ExportTraceServiceRequest req;
  encodeOtlp({sample(), sample(), sample()}, resource(), &req);
  encodeOtlp({sample()}, resource(), &req);
  ASSERT_EQ(req.resource_spans_size(), 1);
  EXPECT_EQ(req.resource_spans(0).scope_spans(0).spans_size(), 1);
  EXPECT_EQ(req.resource_spans(0).resource().attributes_size(), 2);
}

TEST(OtlpEncodeTest, InvalidUtf8IsRepaired) {
  SpanData d = sample();
  d.attributes = {{"user_agent.original", std::string("a\xff"
                                                      "b")}};
  collector::ExportTraceServiceRequest req;
  encodeOtlp({d}, resource(), &req);
  EXPECT_EQ(req.resource_spans(0).scope_spans(0).spans(0).attributes(0).value().string_value(),
            "a\xef\xbf\xbd"
            "b");
}

TEST(OtlpEncodeTest, WireRoundTripAndFieldNumbers) {
  collector::ExportTraceServiceRequest req;
  encodeOtlp({sample()}, resource(), &req);
  std::string wire;
  ASSERT_TRUE(req.SerializeToString(&wire));
  collector::ExportTraceServiceRequest back;
  ASSERT_TRUE(back.ParseFromString(wire));
  EXPECT_EQ(back.SerializeAsString(), wire);
  EXPECT_EQ(back.resource_spans(0).scope_spans(0).spans(0).name(), "GET orders");

  // Spot-check the wire tags against opentelemetry-proto's numbering: Span.flags is fixed32 field
  // 16 (tag 0x85 0x01), Status.code is field 3, Span.kind field 6.
  otlp::Span span;
  span.set_flags(1);
  EXPECT_EQ(span.SerializeAsString(), std::string("\x85\x01\x01\x00\x00\x00", 6));
  otlp::Span k;
  k.set_kind(otlp::Span::SPAN_KIND_SERVER);
  EXPECT_EQ(k.SerializeAsString(), std::string("\x30\x02", 2));
  otlp::Status st;
  st.set_code(otlp::Status::STATUS_CODE_ERROR);
  st.set_message("m");
  EXPECT_EQ(st.SerializeAsString(), std::string("\x12\x01m\x18\x02", 5));
  collector::ExportTraceServiceResponse resp;
  resp.mutable_partial_success()->set_rejected_spans(3);
  EXPECT_EQ(resp.SerializeAsString(), std::string("\x0a\x02\x08\x03", 4));
}

}  // namespace
}  // namespace sidetrace::tracing
