#include "tracing/otlp_json.h"

#include <google/protobuf/util/json_util.h>
#include <google/protobuf/util/message_differencer.h>
#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <string>

#include "opentelemetry/proto/collector/trace/v1/trace_service.pb.h"
#include "tests/support/otlp_json_check.h"
#include "tracing/otlp_encode.h"

namespace sidetrace::tracing {
namespace {

namespace collector = opentelemetry::proto::collector::trace::v1;
namespace common = opentelemetry::proto::common::v1;
namespace trace = opentelemetry::proto::trace::v1;

std::string bytes(const std::string& hex) {
  std::string out;
  EXPECT_TRUE(testsupport::detail::fromHex(hex, out)) << hex;
  return out;
}

void addAttr(google::protobuf::RepeatedPtrField<common::KeyValue>* attrs, const std::string& key,
             const std::string& value) {
  auto* kv = attrs->Add();
  kv->set_key(key);
  kv->mutable_value()->set_string_value(value);
}

// Every field of the schema, each value type, an event and a link.
collector::ExportTraceServiceRequest fullRequest() {
  collector::ExportTraceServiceRequest req;
  auto* rs = req.add_resource_spans();
  addAttr(rs->mutable_resource()->mutable_attributes(), "service.name", "orders");
  rs->mutable_resource()->set_dropped_attributes_count(1);
  rs->set_schema_url("https://opentelemetry.io/schemas/1.21.0");
  auto* ss = rs->add_scope_spans();
  ss->mutable_scope()->set_name("sidetrace");
  ss->mutable_scope()->set_version("0.1.0");
  auto* s = ss->add_spans();
  s->set_trace_id(bytes("4bf92f3577b34da6a3ce929d0e0e4736"));
  s->set_span_id(bytes("00f067aa0ba902b7"));
  s->set_parent_span_id(bytes("1111111111111111"));
  s->set_trace_state("vendor=a");
  s->set_flags(1);
  s->set_name("GET \"app\"");
  s->set_kind(trace::Span::SPAN_KIND_SERVER);
  s->set_start_time_unix_nano(1700000000123456789ULL);
  s->set_end_time_unix_nano(18446744073709551615ULL);  // above 2^53: exact only as a string
  addAttr(s->mutable_attributes(), "url.path", "/a\n\xc3\xa9");
  auto* i = s->add_attributes();
  i->set_key("http.response.status_code");
  i->mutable_value()->set_int_value(-9007199254740993LL);
  auto* d = s->add_attributes();
  d->set_key("ratio");
  d->mutable_value()->set_double_value(0.25);
  auto* b = s->add_attributes();
  b->set_key("ok");
  b->mutable_value()->set_bool_value(true);
  auto* arr = s->add_attributes();
  arr->set_key("list");
  arr->mutable_value()->mutable_array_value()->add_values()->set_string_value("x");
  arr->mutable_value()->mutable_array_value()->add_values()->set_int_value(2);
  auto* kvl = s->add_attributes();
  kvl->set_key("map");
  addAttr(kvl->mutable_value()->mutable_kvlist_value()->mutable_values(), "k", "v");
  auto* raw = s->add_attributes();
  raw->set_key("raw");
  raw->mutable_value()->set_bytes_value(std::string("\x00\xff\x10", 3));
  s->set_dropped_attributes_count(2);
  auto* ev = s->add_events();
  ev->set_time_unix_nano(5);
  ev->set_name("retry");
  addAttr(ev->mutable_attributes(), "attempt", "2");
  s->set_dropped_events_count(3);
  auto* link = s->add_links();
  link->set_trace_id(bytes("5b8efff798038103d269b633813fc60c"));
  link->set_span_id(bytes("eee19b7ec3c1b174"));
  link->set_flags(257);
  s->set_dropped_links_count(4);
  s->mutable_status()->set_code(trace::Status::STATUS_CODE_ERROR);
  s->mutable_status()->set_message("boom");
  // A root span: no parentSpanId, no status.
  auto* root = ss->add_spans();
  root->set_trace_id(bytes("5b8efff798038103d269b633813fc60c"));
  root->set_span_id(bytes("eee19b7ec3c1b174"));
  root->set_name("root");
  root->set_kind(trace::Span::SPAN_KIND_CLIENT);
  return req;
}

std::string toJson(const collector::ExportTraceServiceRequest& req) {
  OtlpJsonEncoder encoder;
  std::string out;
  EXPECT_TRUE(encoder.encode(req.SerializeAsString(), out));
  return out;
}

TEST(OtlpJsonTest, ExactEncoding) {
  EXPECT_EQ(
      toJson(fullRequest()),
      R"({"resourceSpans":[{"resource":{"attributes":[{"key":"service.name","value":)"
      R"({"stringValue":"orders"}}],"droppedAttributesCount":1},"scopeSpans":[{"scope":)"
      R"({"name":"sidetrace","version":"0.1.0"},"spans":[{"traceId":)"
      R"("4bf92f3577b34da6a3ce929d0e0e4736","spanId":"00f067aa0ba902b7","traceState":"vendor=a",)"
      R"("parentSpanId":"1111111111111111","flags":1,"name":"GET \"app\"","kind":2,)"
      R"("startTimeUnixNano":"1700000000123456789","endTimeUnixNano":"18446744073709551615",)"
      R"("attributes":[{"key":"url.path","value":{"stringValue":"/a\n)"
      "\xc3\xa9"
      R"("}},{"key":"http.response.status_code","value":{"intValue":"-9007199254740993"}},)"
      R"({"key":"ratio","value":{"doubleValue":0.25}},{"key":"ok","value":{"boolValue":true}},)"
      R"({"key":"list","value":{"arrayValue":{"values":[{"stringValue":"x"},{"intValue":"2"}]}}},)"
      R"({"key":"map","value":{"kvlistValue":{"values":[{"key":"k","value":{"stringValue":"v"}}]}}},)"
      R"({"key":"raw","value":{"bytesValue":"AP8Q"}}],"droppedAttributesCount":2,"events":[)"
      R"({"timeUnixNano":"5","name":"retry","attributes":[{"key":"attempt","value":)"
      R"({"stringValue":"2"}}]}],"droppedEventsCount":3,"links":[{"traceId":)"
      R"("5b8efff798038103d269b633813fc60c","spanId":"eee19b7ec3c1b174","flags":257}],)"
      R"("droppedLinksCount":4,"status":{"message":"boom","code":2}},{"traceId":)"
      R"("5b8efff798038103d269b633813fc60c","spanId":"eee19b7ec3c1b174","name":"root","kind":3}]}],)"
      R"("schemaUrl":"https://opentelemetry.io/schemas/1.21.0"}]})");
}

// An independent reader (protobuf's JSON parser, after the hex ids are turned into base64) gets
// back exactly the message that was encoded.
TEST(OtlpJsonTest, ProtobufJsonParserReadsItBack) {
  const auto req = fullRequest();
  collector::ExportTraceServiceRequest back;
  ASSERT_EQ(testsupport::parseOtlpJson(toJson(req), &back), "");
  std::string diff;
  google::protobuf::util::MessageDifferencer differencer;
  differencer.ReportDifferencesToString(&diff);
  EXPECT_TRUE(differencer.Compare(req, back)) << diff;

  // The ids really are hex: read as proto3 JSON (base64), they would decode to other bytes.
  collector::ExportTraceServiceRequest as_base64;
  ASSERT_TRUE(google::protobuf::util::JsonStringToMessage(toJson(req), &as_base64).ok());
  EXPECT_NE(as_base64.resource_spans(0).scope_spans(0).spans(0).trace_id(),
            req.resource_spans(0).scope_spans(0).spans(0).trace_id());
}

// What the span path actually produces (otlp_encode.h) survives the trip too.
TEST(OtlpJsonTest, EncodedSpansRoundTrip) {
  SpanRecord rec;
  rec.trace_id = TraceId::fromHex("4bf92f3577b34da6a3ce929d0e0e4736");
  rec.span_id = SpanId::fromHex("00f067aa0ba902b7");
  rec.parent_span_id = SpanId::fromHex("1111111111111111");
  rec.flags = 1;
  rec.name = "GET app";
  rec.kind = SpanKind::Client;
  rec.start_unix_nanos = 1700000000000000001ULL;
  rec.end_unix_nanos = 1700000000000000002ULL;
  rec.status = StatusCode::Error;
  appendOtlpAttribute(rec.attributes, "http.response.status_code", int64_t{503});
  appendOtlpAttribute(rec.attributes, "url.path", std::string_view("/bad\xff"));
  const std::string_view tenants[] = {"acme", "b\"c"};
  appendOtlpStringArrayAttribute(rec.attributes, "http.request.header.x-tenant", tenants, 2);
  std::string run;
  appendOtlpSpan(run, rec);
  std::string wire;
  OtlpRequestEncoder(Resource{{{"service.name", std::string("svc")}}}).encode({run}, wire);

  OtlpJsonEncoder encoder;
  std::string json;
  ASSERT_TRUE(encoder.encode(wire, json));
  collector::ExportTraceServiceRequest back;
  ASSERT_EQ(testsupport::parseOtlpJson(json, &back), "") << json;
  collector::ExportTraceServiceRequest original;
  ASSERT_TRUE(original.ParseFromString(wire));
  EXPECT_TRUE(google::protobuf::util::MessageDifferencer::Equals(original, back)) << json;
  const auto& span = back.resource_spans(0).scope_spans(0).spans(0);
  EXPECT_EQ(span.kind(), trace::Span::SPAN_KIND_CLIENT);
  EXPECT_EQ(span.start_time_unix_nano(), 1700000000000000001ULL);
  EXPECT_EQ(span.attributes(1).value().string_value(), "/bad\xef\xbf\xbd");  // repaired
  EXPECT_NE(json.find(R"({"key":"http.request.header.x-tenant","value":{"arrayValue":{"values":)"
                      R"([{"stringValue":"acme"},{"stringValue":"b\"c"}]}}})"),
            std::string::npos)
      << json;

  // The encoder is reused between batches: a second, smaller request leaves nothing behind.
  collector::ExportTraceServiceRequest empty;
  ASSERT_TRUE(encoder.encode(empty.SerializeAsString(), json));
  EXPECT_EQ(json, "{}");
}

TEST(OtlpJsonTest, NonFiniteDoublesAndInvalidInput) {
  collector::ExportTraceServiceRequest req;
  auto* span = req.add_resource_spans()->add_scope_spans()->add_spans();
  span->set_name("d");
  for (double v :
       {std::numeric_limits<double>::quiet_NaN(), std::numeric_limits<double>::infinity(),
        -std::numeric_limits<double>::infinity(), 1e300}) {
    auto* kv = span->add_attributes();
    kv->set_key("v");
    kv->mutable_value()->set_double_value(v);
  }
  const std::string json = toJson(req);
  EXPECT_NE(json.find(R"({"doubleValue":"NaN"})"), std::string::npos) << json;
  EXPECT_NE(json.find(R"({"doubleValue":"Infinity"})"), std::string::npos) << json;
  EXPECT_NE(json.find(R"({"doubleValue":"-Infinity"})"), std::string::npos) << json;
  EXPECT_NE(json.find(R"({"doubleValue":1e+300})"), std::string::npos) << json;
  collector::ExportTraceServiceRequest back;
  ASSERT_EQ(testsupport::parseOtlpJson(json, &back), "") << json;
  EXPECT_TRUE(std::isnan(
      back.resource_spans(0).scope_spans(0).spans(0).attributes(0).value().double_value()));

  OtlpJsonEncoder encoder;
  std::string out = "stale";
  EXPECT_FALSE(encoder.encode(std::string("\x0a\xff\xff", 3), out));
  EXPECT_EQ(out, "");
}

}  // namespace
}  // namespace sidetrace::tracing
