#include "tracing/otlp_encode.h"

#include <gtest/gtest.h>

#include <cstdint>
#include <limits>
#include <string>
#include <string_view>
#include <vector>

#include "opentelemetry/proto/collector/trace/v1/trace_service.pb.h"

namespace sidetrace::tracing {
namespace {

namespace collector = opentelemetry::proto::collector::trace::v1;
namespace common = opentelemetry::proto::common::v1;
namespace otlp = opentelemetry::proto::trace::v1;

constexpr int64_t kInt64Min = std::numeric_limits<int64_t>::min();
constexpr int64_t kInt64Max = std::numeric_limits<int64_t>::max();

const std::string kTraceIdBytes("\x4b\xf9\x2f\x35\x77\xb3\x4d\xa6\xa3\xce\x92\x9d\x0e\x0e\x47\x36",
                                16);
const std::string kSpanIdBytes("\x00\xf0\x67\xaa\x0b\xa9\x02\xb7", 8);

SpanRecord sample() {
  SpanRecord r;
  r.trace_id = TraceId::fromHex("4bf92f3577b34da6a3ce929d0e0e4736");
  r.span_id = SpanId::fromHex("00f067aa0ba902b7");
  r.parent_span_id = SpanId::fromHex("1111111111111111");
  r.tracestate = "rojo=1";
  r.flags = 1;
  r.name = "GET orders";
  r.kind = SpanKind::Client;
  r.start_unix_nanos = 1700000000000000000ULL;
  r.end_unix_nanos = 1700000000123456789ULL;
  appendOtlpAttribute(r.attributes, "s", "v");
  appendOtlpAttribute(r.attributes, "i", int64_t{-7});
  appendOtlpAttribute(r.attributes, "i.min", kInt64Min);
  appendOtlpAttribute(r.attributes, "i.max", kInt64Max);
  appendOtlpAttribute(r.attributes, "zero", int64_t{0});
  appendOtlpAttribute(r.attributes, "d", 2.5);
  appendOtlpAttribute(r.attributes, "b.false", false);
  appendOtlpAttribute(r.attributes, "b.true", true);
  r.status = StatusCode::Error;
  r.status_message = "upstream reset";
  return r;
}

Resource resource() {
  return Resource{{{"service.name", std::string("orders")},
                   {"pid", int64_t{42}},
                   {"ratio", 0.5},
                   {"debug", false}}};
}

std::string encode(const std::vector<std::string_view>& runs, const Resource& r = resource()) {
  std::string out = "stale content that encode must overwrite";
  OtlpRequestEncoder(r).encode(runs, out);
  return out;
}

// One request holding the given spans, in order.
template <typename... Records>
std::string encodeSpans(const Records&... spans) {
  std::string run;
  (appendOtlpSpan(run, spans), ...);
  return encode({run});
}

collector::ExportTraceServiceRequest parse(const std::string& bytes) {
  collector::ExportTraceServiceRequest req;
  EXPECT_TRUE(req.ParseFromString(bytes));
  return req;
}

// The request protobuf itself would build for resource() and sample(), fields set in the order of
// their field numbers.
collector::ExportTraceServiceRequest expectedMessage(size_t span_count) {
  collector::ExportTraceServiceRequest req;
  auto* rs = req.add_resource_spans();
  auto* res = rs->mutable_resource();
  {
    auto* kv = res->add_attributes();
    kv->set_key("service.name");
    kv->mutable_value()->set_string_value("orders");
    kv = res->add_attributes();
    kv->set_key("pid");
    kv->mutable_value()->set_int_value(42);
    kv = res->add_attributes();
    kv->set_key("ratio");
    kv->mutable_value()->set_double_value(0.5);
    kv = res->add_attributes();
    kv->set_key("debug");
    kv->mutable_value()->set_bool_value(false);
  }
  auto* ss = rs->add_scope_spans();
  ss->mutable_scope()->set_name("sidetrace");
  ss->mutable_scope()->set_version(SIDETRACE_VERSION);
  for (size_t i = 0; i < span_count; ++i) {
    otlp::Span* s = ss->add_spans();
    s->set_trace_id(kTraceIdBytes);
    s->set_span_id(kSpanIdBytes);
    s->set_trace_state("rojo=1");
    s->set_parent_span_id(std::string(8, '\x11'));
    s->set_name("GET orders");
    s->set_kind(otlp::Span::SPAN_KIND_CLIENT);
    s->set_start_time_unix_nano(1700000000000000000ULL);
    s->set_end_time_unix_nano(1700000000123456789ULL);
    auto add = [s](const std::string& key) {
      auto* kv = s->add_attributes();
      kv->set_key(key);
      return kv->mutable_value();
    };
    add("s")->set_string_value("v");
    add("i")->set_int_value(-7);
    add("i.min")->set_int_value(kInt64Min);
    add("i.max")->set_int_value(kInt64Max);
    add("zero")->set_int_value(0);
    add("d")->set_double_value(2.5);
    add("b.false")->set_bool_value(false);
    add("b.true")->set_bool_value(true);
    s->mutable_status()->set_message("upstream reset");
    s->mutable_status()->set_code(otlp::Status::STATUS_CODE_ERROR);
    s->set_flags(1);
  }
  return req;
}

TEST(OtlpEncodeTest, MapsEveryField) {
  const auto req = parse(encodeSpans(sample()));
  ASSERT_EQ(req.resource_spans_size(), 1);
  const auto& rs = req.resource_spans(0);
  const auto& res = rs.resource();
  ASSERT_EQ(res.attributes_size(), 4);
  EXPECT_EQ(res.attributes(0).key(), "service.name");
  EXPECT_EQ(res.attributes(0).value().value_case(), common::AnyValue::kStringValue);
  EXPECT_EQ(res.attributes(0).value().string_value(), "orders");
  EXPECT_EQ(res.attributes(1).key(), "pid");
  EXPECT_EQ(res.attributes(1).value().value_case(), common::AnyValue::kIntValue);
  EXPECT_EQ(res.attributes(1).value().int_value(), 42);
  EXPECT_EQ(res.attributes(2).key(), "ratio");
  EXPECT_EQ(res.attributes(2).value().value_case(), common::AnyValue::kDoubleValue);
  EXPECT_EQ(res.attributes(2).value().double_value(), 0.5);
  EXPECT_EQ(res.attributes(3).key(), "debug");
  EXPECT_EQ(res.attributes(3).value().value_case(), common::AnyValue::kBoolValue);
  EXPECT_FALSE(res.attributes(3).value().bool_value());
  EXPECT_TRUE(rs.schema_url().empty());

  ASSERT_EQ(rs.scope_spans_size(), 1);
  EXPECT_EQ(rs.scope_spans(0).scope().name(), "sidetrace");
  EXPECT_EQ(rs.scope_spans(0).scope().version(), SIDETRACE_VERSION);
  ASSERT_EQ(rs.scope_spans(0).spans_size(), 1);
  const otlp::Span& s = rs.scope_spans(0).spans(0);
  EXPECT_EQ(s.trace_id(), kTraceIdBytes);
  EXPECT_EQ(s.span_id(), kSpanIdBytes);
  EXPECT_EQ(s.parent_span_id(), std::string(8, '\x11'));
  EXPECT_EQ(s.trace_state(), "rojo=1");
  EXPECT_EQ(s.flags(), 1u);
  EXPECT_EQ(s.name(), "GET orders");
  EXPECT_EQ(s.kind(), otlp::Span::SPAN_KIND_CLIENT);
  EXPECT_EQ(s.start_time_unix_nano(), 1700000000000000000ULL);
  EXPECT_EQ(s.end_time_unix_nano(), 1700000000123456789ULL);
  ASSERT_EQ(s.attributes_size(), 8);
  const char* keys[] = {"s", "i", "i.min", "i.max", "zero", "d", "b.false", "b.true"};
  for (int i = 0; i < 8; ++i) {
    EXPECT_EQ(s.attributes(i).key(), keys[i]);
  }
  EXPECT_EQ(s.attributes(0).value().value_case(), common::AnyValue::kStringValue);
  EXPECT_EQ(s.attributes(0).value().string_value(), "v");
  EXPECT_EQ(s.attributes(1).value().value_case(), common::AnyValue::kIntValue);
  EXPECT_EQ(s.attributes(1).value().int_value(), -7);
  EXPECT_EQ(s.attributes(2).value().int_value(), kInt64Min);
  EXPECT_EQ(s.attributes(3).value().int_value(), kInt64Max);
  // A oneof member is present even at its default value.
  EXPECT_EQ(s.attributes(4).value().value_case(), common::AnyValue::kIntValue);
  EXPECT_EQ(s.attributes(4).value().int_value(), 0);
  EXPECT_EQ(s.attributes(5).value().value_case(), common::AnyValue::kDoubleValue);
  EXPECT_EQ(s.attributes(5).value().double_value(), 2.5);
  EXPECT_EQ(s.attributes(6).value().value_case(), common::AnyValue::kBoolValue);
  EXPECT_FALSE(s.attributes(6).value().bool_value());
  EXPECT_EQ(s.attributes(7).value().value_case(), common::AnyValue::kBoolValue);
  EXPECT_TRUE(s.attributes(7).value().bool_value());
  ASSERT_TRUE(s.has_status());
  EXPECT_EQ(s.status().code(), otlp::Status::STATUS_CODE_ERROR);
  EXPECT_EQ(s.status().message(), "upstream reset");
  EXPECT_EQ(s.dropped_attributes_count(), 0u);
  EXPECT_EQ(s.events_size(), 0);
  EXPECT_EQ(s.links_size(), 0);
}

// Fields are written in field-number order, as protobuf itself serializes: the bytes are exactly
// what the generated code produces for the same message.
TEST(OtlpEncodeTest, BytesEqualProtobufSerialization) {
  const std::string one = encodeSpans(sample());
  EXPECT_EQ(one, expectedMessage(1).SerializeAsString());
  const std::string three = encodeSpans(sample(), sample(), sample());
  EXPECT_EQ(three, expectedMessage(3).SerializeAsString());
  // And a parse / re-serialize round trip changes nothing.
  EXPECT_EQ(parse(three).SerializeAsString(), three);
}

// String arrays (http.request.header.* attributes): an ArrayValue of string AnyValues, byte for
// byte what protobuf writes; each string repaired and cut like a string value; decoded back.
TEST(OtlpEncodeTest, StringArraysEqualProtobufSerialization) {
  SpanRecord r = sample();
  r.attributes.clear();
  const std::string long_value(300, 'x');  // multi-byte lengths at every level
  const std::string_view values[] = {"acme", "", long_value};
  appendOtlpStringArrayAttribute(r.attributes, "http.request.header.x-tenant", values, 3);
  const std::string_view bad[] = {"ok", "a\xff", "caf\xc3\xa9"};
  appendOtlpStringArrayAttribute(r.attributes, "h", bad, 3, 4);
  appendOtlpStringArrayAttribute(r.attributes, "empty", nullptr, 0);
  Resource res{
      {{"service.name", std::string("orders")}, {"list", std::vector<std::string>{"a", "b"}}}};
  std::string run;
  appendOtlpSpan(run, r);
  std::string wire;
  OtlpRequestEncoder(res).encode({run}, wire);

  collector::ExportTraceServiceRequest want;
  auto* rs = want.add_resource_spans();
  auto* kv = rs->mutable_resource()->add_attributes();
  kv->set_key("service.name");
  kv->mutable_value()->set_string_value("orders");
  kv = rs->mutable_resource()->add_attributes();
  kv->set_key("list");
  kv->mutable_value()->mutable_array_value()->add_values()->set_string_value("a");
  kv->mutable_value()->mutable_array_value()->add_values()->set_string_value("b");
  auto* ss = rs->add_scope_spans();
  ss->mutable_scope()->set_name("sidetrace");
  ss->mutable_scope()->set_version(SIDETRACE_VERSION);
  otlp::Span* s = ss->add_spans();
  s->set_trace_id(kTraceIdBytes);
  s->set_span_id(kSpanIdBytes);
  s->set_trace_state("rojo=1");
  s->set_parent_span_id(std::string(8, '\x11'));
  s->set_name("GET orders");
  s->set_kind(otlp::Span::SPAN_KIND_CLIENT);
  s->set_start_time_unix_nano(1700000000000000000ULL);
  s->set_end_time_unix_nano(1700000000123456789ULL);
  kv = s->add_attributes();
  kv->set_key("http.request.header.x-tenant");
  for (std::string_view v : values) {
    kv->mutable_value()->mutable_array_value()->add_values()->set_string_value(std::string(v));
  }
  kv = s->add_attributes();
  kv->set_key("h");
  kv->mutable_value()->mutable_array_value()->add_values()->set_string_value("ok");
  kv->mutable_value()->mutable_array_value()->add_values()->set_string_value("a\xef\xbf\xbd");
  kv->mutable_value()->mutable_array_value()->add_values()->set_string_value("caf");  // é cut
  kv = s->add_attributes();
  kv->set_key("empty");
  kv->mutable_value()->mutable_array_value();
  s->mutable_status()->set_message("upstream reset");
  s->mutable_status()->set_code(otlp::Status::STATUS_CODE_ERROR);
  s->set_flags(1);
  EXPECT_EQ(wire, want.SerializeAsString());

  std::vector<SpanData> spans;
  Resource decoded_resource;
  ASSERT_TRUE(decodeOtlpRequest(wire, &spans, &decoded_resource));
  ASSERT_EQ(spans.size(), 1u);
  using Strings = std::vector<std::string>;
  const AttributeValue* tenant = spans[0].attribute("http.request.header.x-tenant");
  ASSERT_NE(tenant, nullptr);
  EXPECT_EQ(std::get<Strings>(*tenant), (Strings{"acme", "", long_value}));
  ASSERT_EQ(decoded_resource.attributes.size(), 2u);
  EXPECT_EQ(std::get<Strings>(decoded_resource.attributes[1].value), (Strings{"a", "b"}));
}

TEST(OtlpEncodeTest, RootSpanHasEmptyParentAndUnsetStatusIsAbsent) {
  SpanRecord r = sample();
  r.parent_span_id = SpanId{};
  r.tracestate.clear();
  r.flags = 0;
  r.status = StatusCode::Unset;
  r.status_message = "dropped: only an Error carries a message";
  r.kind = SpanKind::Server;
  r.attributes.clear();
  const std::string bytes = encodeSpans(r);
  const auto req = parse(bytes);
  const otlp::Span& s = req.resource_spans(0).scope_spans(0).spans(0);
  EXPECT_TRUE(s.parent_span_id().empty());
  EXPECT_TRUE(s.trace_state().empty());
  EXPECT_EQ(s.flags(), 0u);
  EXPECT_FALSE(s.has_status());
  EXPECT_EQ(s.kind(), otlp::Span::SPAN_KIND_SERVER);
  EXPECT_EQ(s.attributes_size(), 0);
  // Absent fields are absent on the wire too, as protobuf leaves out proto3 defaults.
  EXPECT_EQ(bytes, req.SerializeAsString());
}

TEST(OtlpEncodeTest, OkStatusWithoutMessage) {
  SpanRecord r = sample();
  r.status = StatusCode::Ok;
  r.status_message.clear();
  r.kind = SpanKind::Internal;
  const std::string bytes = encodeSpans(r);
  const auto req = parse(bytes);
  const otlp::Span& s = req.resource_spans(0).scope_spans(0).spans(0);
  ASSERT_TRUE(s.has_status());
  EXPECT_EQ(s.status().code(), otlp::Status::STATUS_CODE_OK);
  EXPECT_EQ(s.status().message(), "");
  EXPECT_EQ(s.kind(), otlp::Span::SPAN_KIND_INTERNAL);
  EXPECT_EQ(bytes, req.SerializeAsString());
}

TEST(OtlpEncodeTest, FlagsAreTheLowByteOfTheFixed32) {
  SpanRecord r = sample();
  r.flags = 0x81;
  const auto req = parse(encodeSpans(r));
  EXPECT_EQ(req.resource_spans(0).scope_spans(0).spans(0).flags(), 0x81u);
}

TEST(OtlpEncodeTest, ManyRunsAndSpansInOrder) {
  std::string a, b;
  for (int i = 0; i < 2; ++i) {
    SpanRecord r = sample();
    r.name = "a" + std::to_string(i);
    appendOtlpSpan(a, r);
  }
  for (int i = 0; i < 3; ++i) {
    SpanRecord r = sample();
    r.name = "b" + std::to_string(i);
    r.kind = SpanKind::Server;
    appendOtlpSpan(b, r);
  }
  const auto req = parse(encode({a, std::string_view(), b}));
  ASSERT_EQ(req.resource_spans_size(), 1);
  ASSERT_EQ(req.resource_spans(0).scope_spans_size(), 1);
  const auto& ss = req.resource_spans(0).scope_spans(0);
  ASSERT_EQ(ss.spans_size(), 5);
  const char* names[] = {"a0", "a1", "b0", "b1", "b2"};
  for (int i = 0; i < 5; ++i) {
    EXPECT_EQ(ss.spans(i).name(), names[i]);
    EXPECT_EQ(ss.spans(i).attributes_size(), 8);
  }
  EXPECT_EQ(ss.spans(4).kind(), otlp::Span::SPAN_KIND_SERVER);
}

TEST(OtlpEncodeTest, EmptyRunListIsAValidRequestWithNoSpans) {
  for (const auto& runs :
       {std::vector<std::string_view>{}, std::vector<std::string_view>{std::string_view()}}) {
    const std::string bytes = encode(runs);
    const auto req = parse(bytes);
    ASSERT_EQ(req.resource_spans_size(), 1);
    EXPECT_EQ(req.resource_spans(0).resource().attributes_size(), 4);
    ASSERT_EQ(req.resource_spans(0).scope_spans_size(), 1);
    EXPECT_EQ(req.resource_spans(0).scope_spans(0).scope().name(), "sidetrace");
    EXPECT_EQ(req.resource_spans(0).scope_spans(0).spans_size(), 0);
    EXPECT_EQ(bytes, expectedMessage(0).SerializeAsString());
  }
}

TEST(OtlpEncodeTest, EmptyResource) {
  std::string run;
  appendOtlpSpan(run, sample());
  const auto req = parse(encode({run}, Resource{}));
  ASSERT_EQ(req.resource_spans_size(), 1);
  EXPECT_EQ(req.resource_spans(0).resource().attributes_size(), 0);
  EXPECT_EQ(req.resource_spans(0).scope_spans(0).spans_size(), 1);
}

TEST(OtlpEncodeTest, EncoderOverwritesItsOutput) {
  std::string run;
  for (int i = 0; i < 3; ++i) {
    appendOtlpSpan(run, sample());
  }
  std::string one;
  appendOtlpSpan(one, sample());
  OtlpRequestEncoder encoder(resource());
  std::string out;
  encoder.encode({run}, out);
  EXPECT_EQ(parse(out).resource_spans(0).scope_spans(0).spans_size(), 3);
  encoder.encode({one}, out);
  const auto req = parse(out);
  ASSERT_EQ(req.resource_spans_size(), 1);
  EXPECT_EQ(req.resource_spans(0).scope_spans(0).spans_size(), 1);
  EXPECT_EQ(req.resource_spans(0).resource().attributes_size(), 4);
}

TEST(OtlpEncodeTest, InvalidUtf8IsRepaired) {
  SpanRecord r = sample();
  r.name = "GET \xc3(\xff";
  r.attributes.clear();
  appendOtlpAttribute(r.attributes, "user_agent.original",
                      "a\xff"
                      "b");
  appendOtlpAttribute(r.attributes, "valid", "caf\xc3\xa9 \xe2\x82\xac");  // kept as is
  r.status_message = "bad\x80";
  const auto req = parse(encodeSpans(r));  // a proto3 parser rejects invalid UTF-8 strings
  const otlp::Span& s = req.resource_spans(0).scope_spans(0).spans(0);
  EXPECT_EQ(s.name(), "GET \xef\xbf\xbd(\xef\xbf\xbd");
  ASSERT_EQ(s.attributes_size(), 2);
  EXPECT_EQ(s.attributes(0).value().string_value(),
            "a\xef\xbf\xbd"
            "b");
  EXPECT_EQ(s.attributes(1).value().string_value(), "caf\xc3\xa9 \xe2\x82\xac");
  EXPECT_EQ(s.status().message(), "bad\xef\xbf\xbd");
}

TEST(OtlpEncodeTest, InvalidUtf8InResourceIsRepaired) {
  // Resource keys come from configuration (OTEL_RESOURCE_ATTRIBUTES): checked too.
  Resource r{{{"service.name", std::string("svc\xff")}, {"k\xfe", int64_t{1}}}};
  const auto req = parse(encode({}, r));
  const auto& attrs = req.resource_spans(0).resource().attributes();
  ASSERT_EQ(attrs.size(), 2);
  EXPECT_EQ(attrs[0].value().string_value(), "svc\xef\xbf\xbd");
  EXPECT_EQ(attrs[1].key(), "k\xef\xbf\xbd");
  EXPECT_EQ(attrs[1].value().int_value(), 1);
}

TEST(OtlpEncodeTest, LongValuesUseMultiByteLengths) {
  SpanRecord r = sample();
  r.attributes.clear();
  appendOtlpAttribute(r.attributes, "long", std::string(20000, 'x'));
  r.name = std::string(300, 'n');
  const std::string bytes = encodeSpans(r, sample());
  const auto req = parse(bytes);
  const auto& ss = req.resource_spans(0).scope_spans(0);
  ASSERT_EQ(ss.spans_size(), 2);
  EXPECT_EQ(ss.spans(0).name(), std::string(300, 'n'));
  EXPECT_EQ(ss.spans(0).attributes(0).value().string_value(), std::string(20000, 'x'));
  EXPECT_EQ(ss.spans(1).name(), "GET orders");
  EXPECT_EQ(bytes, req.SerializeAsString());
}

TEST(OtlpEncodeTest, SpansPrefixBytesSplitsAtSpanBoundaries) {
  // Spans of different sizes, one needing a 3-byte length.
  std::vector<std::string> one(3);
  SpanRecord r = sample();
  appendOtlpSpan(one[0], r);
  r.attributes.clear();
  appendOtlpSpan(one[1], r);
  appendOtlpAttribute(r.attributes, "long", std::string(20000, 'x'));
  appendOtlpSpan(one[2], r);
  ASSERT_NE(one[0].size(), one[1].size());
  const std::string run = one[0] + one[1] + one[2];
  EXPECT_EQ(otlpSpansPrefixBytes(run, 0), 0u);
  EXPECT_EQ(otlpSpansPrefixBytes(run, 1), one[0].size());
  EXPECT_EQ(otlpSpansPrefixBytes(run, 2), one[0].size() + one[1].size());
  EXPECT_EQ(otlpSpansPrefixBytes(run, 3), run.size());
  EXPECT_EQ(otlpSpansPrefixBytes(run, 4), run.size());
  EXPECT_EQ(otlpSpansPrefixBytes(run, 1000), run.size());
  EXPECT_EQ(otlpSpansPrefixBytes("", 0), 0u);
  EXPECT_EQ(otlpSpansPrefixBytes("", 5), 0u);
  const std::string big_first = one[2] + one[0];
  EXPECT_EQ(otlpSpansPrefixBytes(big_first, 1), one[2].size());
  EXPECT_EQ(otlpSpansPrefixBytes(big_first, 2), big_first.size());

  // A prefix is itself a valid run: it frames into a request holding exactly those spans.
  const std::string_view prefix(run.data(), otlpSpansPrefixBytes(run, 2));
  const auto req = parse(encode({prefix}));
  ASSERT_EQ(req.resource_spans(0).scope_spans(0).spans_size(), 2);
  EXPECT_EQ(req.resource_spans(0).scope_spans(0).spans(0).attributes_size(), 8);
  EXPECT_EQ(req.resource_spans(0).scope_spans(0).spans(1).attributes_size(), 0);
}

TEST(OtlpEncodeTest, SpansPrefixWithinABytesBudget) {
  std::vector<std::string> one(3);
  SpanRecord r = sample();
  for (auto& bytes : one) {
    appendOtlpSpan(bytes, r);
  }
  const std::string run = one[0] + one[1] + one[2];
  const size_t s = one[0].size();
  EXPECT_EQ(otlpSpansPrefix(run, 10, 3 * s).count, 3u);
  EXPECT_EQ(otlpSpansPrefix(run, 10, 3 * s - 1).count, 2u);
  EXPECT_EQ(otlpSpansPrefix(run, 10, 3 * s - 1).bytes, 2 * s);
  EXPECT_EQ(otlpSpansPrefix(run, 1, 3 * s).count, 1u);
  EXPECT_EQ(otlpSpansPrefix(run, 10, s - 1).count, 0u);  // not even the first one fits
  EXPECT_EQ(otlpSpansPrefix(run, 10, s - 1).bytes, 0u);
}

// The value length limit cuts at a character boundary, also after invalid bytes were repaired
// (each grows to three bytes), and never touches numbers or short values.
TEST(OtlpEncodeTest, StringValuesCutAtTheLimitOnACharacterBoundary) {
  SpanRecord r = sample();
  r.attributes.clear();
  appendOtlpAttribute(r.attributes, "ascii", "abcdefgh", 4);
  appendOtlpAttribute(r.attributes, "two", "ab\xc3\xa9", 3);          // "é" would be split
  appendOtlpAttribute(r.attributes, "four", "\xf0\x9f\x98\x80x", 3);  // an emoji: nothing fits
  appendOtlpAttribute(r.attributes, "repaired", "a\xff\xff", 5);      // a + U+FFFD (3) fits
  appendOtlpAttribute(r.attributes, "short", "ab", 4);
  appendOtlpAttribute(r.attributes, "n", int64_t{1234567890}, 2);
  const auto req = parse(encodeSpans(r));
  const otlp::Span& s = req.resource_spans(0).scope_spans(0).spans(0);
  ASSERT_EQ(s.attributes_size(), 6);
  EXPECT_EQ(s.attributes(0).value().string_value(), "abcd");
  EXPECT_EQ(s.attributes(1).value().string_value(), "ab");
  EXPECT_EQ(s.attributes(2).value().string_value(), "");
  EXPECT_EQ(s.attributes(3).value().string_value(), "a\xef\xbf\xbd");
  EXPECT_EQ(s.attributes(4).value().string_value(), "ab");
  EXPECT_EQ(s.attributes(5).value().int_value(), 1234567890);
}

// Short ASCII strings take a one-pass path (every length one byte): the bytes are protobuf's on
// both sides of its bounds (key + value of 80 to 81 bytes with a 20-byte key, an empty value,
// a key too long for it, non-ASCII just inside).
TEST(OtlpEncodeTest, ShortAsciiAttributesAtTheEdgesOfTheOnePassPath) {
  SpanRecord r = sample();
  r.attributes.clear();
  const std::string key20(20, 'k');
  std::vector<std::pair<std::string, std::string>> cases = {
      {key20, std::string(79, 'v')}, {key20, std::string(80, 'v')},
      {key20, std::string(81, 'v')}, {"e", ""},
      {std::string(81, 'K'), "v"},   {"u", "caf\xc3\xa9 ok"},
      {"x", std::string(99, 'w')}};
  for (const auto& [k, v] : cases) {
    appendOtlpAttribute(r.attributes, k, std::string_view(v));
  }
  const std::string bytes = encodeSpans(r);
  const auto req = parse(bytes);
  const otlp::Span& s = req.resource_spans(0).scope_spans(0).spans(0);
  ASSERT_EQ(s.attributes_size(), static_cast<int>(cases.size()));
  for (int i = 0; i < s.attributes_size(); ++i) {
    EXPECT_EQ(s.attributes(i).key(), cases[static_cast<size_t>(i)].first);
    EXPECT_EQ(s.attributes(i).value().string_value(), cases[static_cast<size_t>(i)].second);
  }
  EXPECT_EQ(bytes, req.SerializeAsString());
}

// The ASCII check reads 8, 4 or 1 bytes at a time with overlapping tails: a non-ASCII byte at any
// position of any short length must still send the value through UTF-8 repair.
TEST(OtlpEncodeTest, NonAsciiByteAtEveryPositionOfShortValuesIsSeen) {
  for (size_t len = 1; len <= 20; ++len) {
    for (size_t at = 0; at < len; ++at) {
      SpanRecord r = sample();
      r.attributes.clear();
      std::string value(len, 'a');
      value[at] = '\xff';
      appendOtlpAttribute(r.attributes, "k", std::string_view(value));
      const auto req = parse(encodeSpans(r));  // raw 0xff would fail proto3's UTF-8 check
      std::string want = value;
      want.replace(at, 1, "\xef\xbf\xbd");
      ASSERT_EQ(req.resource_spans(0).scope_spans(0).spans(0).attributes(0).value().string_value(),
                want)
          << "length " << len << ", byte " << at;
    }
  }
}

TEST(OtlpEncodeTest, IntegersAtVarintEdgesMatchProtobuf) {
  SpanRecord r = sample();
  r.attributes.clear();
  const std::vector<int64_t> values = {0,         1,     127,       128, 16383,    16384,
                                       (1 << 21), 65535, kInt64Max, -1,  kInt64Min};
  const std::string key80(80, 'k');  // the longest key of the one-pass path, and one past it
  const std::string key81(81, 'k');
  for (int64_t v : values) {
    appendOtlpAttribute(r.attributes, "n", v);
    appendOtlpAttribute(r.attributes, key80, v);
    appendOtlpAttribute(r.attributes, key81, v);
  }
  const std::string bytes = encodeSpans(r);
  const auto req = parse(bytes);
  const otlp::Span& s = req.resource_spans(0).scope_spans(0).spans(0);
  ASSERT_EQ(s.attributes_size(), static_cast<int>(3 * values.size()));
  for (size_t i = 0; i < values.size(); ++i) {
    for (size_t j = 0; j < 3; ++j) {
      EXPECT_EQ(s.attributes(static_cast<int>(3 * i + j)).value().int_value(), values[i]);
    }
  }
  EXPECT_EQ(bytes, req.SerializeAsString());
}

TEST(OtlpEncodeTest, DroppedAttributesCountIsEncoded) {
  SpanRecord r = sample();
  r.dropped_attributes_count = 300;  // a two-byte varint
  const std::string bytes = encodeSpans(r);
  const auto req = parse(bytes);
  EXPECT_EQ(req.resource_spans(0).scope_spans(0).spans(0).dropped_attributes_count(), 300u);
  EXPECT_EQ(bytes, req.SerializeAsString());
  std::vector<SpanData> spans;
  ASSERT_TRUE(decodeOtlpRequest(bytes, &spans));
  EXPECT_EQ(spans.at(0).dropped_attributes_count, 300u);
}

TEST(OtlpDecodeTest, DecodesEveryField) {
  std::vector<SpanData> spans;
  Resource res;
  ASSERT_TRUE(decodeOtlpRequest(encodeSpans(sample()), &spans, &res));
  ASSERT_EQ(res.attributes.size(), 4u);
  EXPECT_EQ(res.attributes[0].key, "service.name");
  EXPECT_EQ(std::get<std::string>(res.attributes[0].value), "orders");
  EXPECT_EQ(std::get<int64_t>(res.attributes[1].value), 42);
  EXPECT_EQ(std::get<double>(res.attributes[2].value), 0.5);
  EXPECT_EQ(std::get<bool>(res.attributes[3].value), false);
  ASSERT_EQ(spans.size(), 1u);
  const SpanData& d = spans[0];
  EXPECT_EQ(d.trace_id.hex(), "4bf92f3577b34da6a3ce929d0e0e4736");
  EXPECT_EQ(d.span_id.hex(), "00f067aa0ba902b7");
  EXPECT_EQ(d.parent_span_id.hex(), "1111111111111111");
  EXPECT_EQ(d.tracestate, "rojo=1");
  EXPECT_EQ(d.flags, 1);
  EXPECT_EQ(d.name, "GET orders");
  EXPECT_EQ(d.kind, SpanKind::Client);
  EXPECT_EQ(d.start_unix_nanos, 1700000000000000000ULL);
  EXPECT_EQ(d.end_unix_nanos, 1700000000123456789ULL);
  ASSERT_EQ(d.attributes.size(), 8u);
  EXPECT_EQ(std::get<std::string>(*d.attribute("s")), "v");
  EXPECT_EQ(std::get<int64_t>(*d.attribute("i")), -7);
  EXPECT_EQ(std::get<int64_t>(*d.attribute("i.min")), kInt64Min);
  EXPECT_EQ(std::get<int64_t>(*d.attribute("zero")), 0);
  EXPECT_EQ(std::get<double>(*d.attribute("d")), 2.5);
  EXPECT_EQ(std::get<bool>(*d.attribute("b.false")), false);
  EXPECT_EQ(std::get<bool>(*d.attribute("b.true")), true);
  EXPECT_EQ(d.attribute("missing"), nullptr);
  EXPECT_EQ(d.status, StatusCode::Error);
  EXPECT_EQ(d.status_message, "upstream reset");
}

TEST(OtlpDecodeTest, EveryResourceAndScope) {
  collector::ExportTraceServiceRequest req = expectedMessage(1);
  auto* second = req.add_resource_spans();
  second->mutable_resource()->add_attributes()->set_key("other");
  second->add_scope_spans()->add_spans()->set_name("x");
  second->add_scope_spans()->add_spans()->set_name("y");
  std::vector<SpanData> spans;
  Resource res;
  ASSERT_TRUE(decodeOtlpRequest(req.SerializeAsString(), &spans, &res));
  ASSERT_EQ(spans.size(), 3u);
  EXPECT_EQ(spans[0].name, "GET orders");
  EXPECT_EQ(spans[1].name, "x");
  EXPECT_EQ(spans[2].name, "y");
  EXPECT_FALSE(spans[1].trace_id.valid());  // absent ids decode as invalid
  EXPECT_EQ(res.attributes.size(), 4u);     // the first resource
}

TEST(OtlpDecodeTest, RejectsInvalidBytes) {
  std::vector<SpanData> spans;
  const std::string good = encodeSpans(sample());
  EXPECT_FALSE(decodeOtlpRequest(good.substr(0, good.size() - 3), &spans));  // truncated
  EXPECT_FALSE(decodeOtlpRequest(std::string("\xff\xff\xff", 3), &spans));
  EXPECT_TRUE(spans.empty());
  EXPECT_TRUE(decodeOtlpRequest("", &spans));  // an empty message is valid
  EXPECT_TRUE(spans.empty());
}

TEST(OtlpEncodeTest, ProtoFieldNumbers) {
  // Spot-check the generated code against opentelemetry-proto's numbering: Span.flags is fixed32
  // field 16 (tag 0x85 0x01), Status.code is field 3, Span.kind field 6.
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

namespace sidetrace::tracing {
namespace {

TEST(OtlpEncodeLinks, LinksAreSpanField13AndDecode) {
  SpanRecord r = sample();
  const TraceId t1 = TraceId::fromHex("0102030405060708090a0b0c0d0e0f10");
  const SpanId s1 = SpanId::fromHex("1112131415161718");
  const TraceId t2 = TraceId::fromHex("2122232425262728292a2b2c2d2e2f30");
  const SpanId s2 = SpanId::fromHex("3132333435363738");
  appendOtlpLink(r.links, t1, s1, kFlagSampled);
  appendOtlpLink(r.links, t2, s2, 0);
  const std::string bytes = encodeSpans(r);
  const auto req = parse(bytes);
  const auto& s = req.resource_spans(0).scope_spans(0).spans(0);
  ASSERT_EQ(s.links_size(), 2);
  EXPECT_EQ(s.links(0).trace_id(), std::string(reinterpret_cast<const char*>(t1.bytes.data()), 16));
  EXPECT_EQ(s.links(0).span_id(), std::string(reinterpret_cast<const char*>(s1.bytes.data()), 8));
  EXPECT_EQ(s.links(0).flags(), 1u);
  EXPECT_EQ(s.links(1).flags(), 0u);
  EXPECT_EQ(s.attributes_size(), 8);          // the attributes before are intact
  EXPECT_EQ(bytes, req.SerializeAsString());  // the same bytes protobuf writes
  std::vector<SpanData> spans;
  ASSERT_TRUE(decodeOtlpRequest(bytes, &spans));
  ASSERT_EQ(spans.size(), 1u);
  ASSERT_EQ(spans[0].links.size(), 2u);
  EXPECT_EQ(spans[0].links[1].trace_id, t2);
  EXPECT_EQ(spans[0].links[1].span_id, s2);
}

}  // namespace
}  // namespace sidetrace::tracing
