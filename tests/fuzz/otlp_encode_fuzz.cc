// The OTLP encoders: a span built from fuzzed fields (ids, flags, kind, status, times, name,
// status message, tracestate as the propagator passes it on, attributes of every value type the
// proxy writes, string arrays included, with the span limits' value cut) goes through the project's
// encoder (tracing/otlp_encode.h) and is decoded with libprotobuf's generated classes; every field
// must come back equal (strings: equal when the input was valid UTF-8 and within the cut, else
// valid UTF-8 no longer than the cut). The same request through the OTLP/JSON writer
// (tracing/otlp_json.h), read back with protobuf's JSON parser (tests/support/otlp_json_check.h),
// must equal the protobuf decoding.

#include <google/protobuf/util/field_comparator.h>
#include <google/protobuf/util/message_differencer.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

#include "opentelemetry/proto/collector/trace/v1/trace_service.pb.h"
#include "tests/fuzz/fuzz_input.h"
#include "tests/support/otlp_json_check.h"
#include "tracing/otlp_encode.h"
#include "tracing/otlp_json.h"
#include "tracing/propagator.h"
#include "tracing/utf8.h"

namespace otlp = opentelemetry::proto;
using sidetrace::fuzz::check;
using sidetrace::fuzz::FuzzInput;
using namespace sidetrace::tracing;

namespace {

// Attribute keys are literals in the proxy (the encoder trusts them): pick among real ones.
constexpr const char* kKeys[] = {
    "http.request.method",  "url.path",          "http.response.status_code",
    "user_agent.original",  "server.port",       "error.type",
    "rpc.grpc.status_code", "sidetrace.sampled", "http.request.header.x-tenant"};

struct ExpectedAttribute {
  std::string key;
  AttributeValue value;
  std::string raw;                // a string value as given, before repair and cut
  std::vector<std::string> raws;  // a string array's values as given
  size_t cut = SIZE_MAX;
};

// A string field as decoded, against what was given.
void checkText(const std::string& decoded, std::string_view given, size_t cut, const char* what) {
  check(isValidUtf8(decoded), what, decoded);
  if (isValidUtf8(given) && given.size() <= cut) {
    check(decoded == given, what, given, decoded);
  } else {
    check(decoded.size() <= std::max(cut, given.size() * 3), what, given, decoded);
    if (cut != SIZE_MAX) {
      check(decoded.size() <= cut, what, given, decoded);
    }
  }
}

template <size_t N>
void fill(std::array<uint8_t, N>& bytes, FuzzInput& in) {
  for (auto& b : bytes) {
    b = in.byte();
  }
}

void checkSpan(const otlp::trace::v1::Span& s, const SpanRecord& rec,
               const std::vector<ExpectedAttribute>& attrs) {
  check(std::memcmp(s.trace_id().data(), rec.trace_id.bytes.data(), 16) == 0 &&
            s.trace_id().size() == 16,
        "trace id differs");
  check(
      s.span_id().size() == 8 && std::memcmp(s.span_id().data(), rec.span_id.bytes.data(), 8) == 0,
      "span id differs");
  if (rec.parent_span_id.valid()) {
    check(s.parent_span_id().size() == 8 &&
              std::memcmp(s.parent_span_id().data(), rec.parent_span_id.bytes.data(), 8) == 0,
          "parent span id differs");
  } else {
    check(s.parent_span_id().empty(), "a root span has a parent span id");
  }
  check(s.trace_state() == rec.tracestate, "tracestate differs", rec.tracestate, s.trace_state());
  checkText(s.name(), rec.name, SIZE_MAX, "name differs");
  check(static_cast<int>(s.kind()) == static_cast<int>(rec.kind), "kind differs");
  check(s.start_time_unix_nano() == rec.start_unix_nanos, "start time differs");
  check(s.end_time_unix_nano() == rec.end_unix_nanos, "end time differs");
  check((s.flags() & 0xff) == rec.flags, "flags differ");
  check(s.dropped_attributes_count() == rec.dropped_attributes_count, "dropped count differs");
  check(static_cast<int>(s.status().code()) == static_cast<int>(rec.status), "status differs");
  if (rec.status == StatusCode::Unset) {
    check(s.status().message().empty(), "a status message without a status");
  } else {
    checkText(s.status().message(), rec.status_message, SIZE_MAX, "status message differs");
  }
  check(s.attributes_size() == static_cast<int>(attrs.size()), "attribute count differs");
  for (size_t i = 0; i < attrs.size(); ++i) {
    const auto& kv = s.attributes(static_cast<int>(i));
    const auto& want = attrs[i];
    check(kv.key() == want.key, "attribute key differs", want.key, kv.key());
    const auto& v = kv.value();
    if (const auto* str = std::get_if<std::string>(&want.value)) {
      (void)str;
      check(v.has_string_value(), "attribute type differs", want.key);
      checkText(v.string_value(), want.raw, want.cut, "string attribute differs");
    } else if (const auto* i64 = std::get_if<int64_t>(&want.value)) {
      check(v.has_int_value() && v.int_value() == *i64, "int attribute differs", want.key);
    } else if (const auto* d = std::get_if<double>(&want.value)) {
      check(v.has_double_value() &&
                (v.double_value() == *d || (std::isnan(*d) && std::isnan(v.double_value()))),
            "double attribute differs", want.key);
    } else if (std::holds_alternative<std::vector<std::string>>(want.value)) {
      check(v.has_array_value() &&
                v.array_value().values_size() == static_cast<int>(want.raws.size()),
            "string array attribute differs", want.key);
      for (size_t j = 0; j < want.raws.size(); ++j) {
        const auto& item = v.array_value().values(static_cast<int>(j));
        check(item.has_string_value(), "string array item type differs", want.key);
        checkText(item.string_value(), want.raws[j], want.cut, "string array item differs");
      }
    } else {
      check(v.has_bool_value() && v.bool_value() == std::get<bool>(want.value),
            "bool attribute differs", want.key);
    }
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  FuzzInput in(data, size);
  SpanRecord rec;
  fill(rec.trace_id.bytes, in);
  fill(rec.span_id.bytes, in);
  fill(rec.parent_span_id.bytes, in);
  rec.flags = in.byte();
  rec.kind = static_cast<SpanKind>(1 + in.byte() % 5);
  rec.status = static_cast<StatusCode>(in.byte() % 3);
  rec.start_unix_nanos = in.u64();
  rec.end_unix_nanos = in.u64();
  rec.dropped_attributes_count = in.byte() * 1000u;
  rec.name = std::string(in.line());
  rec.status_message = std::string(in.line());
  rec.tracestate = sanitizeTracestate(in.line()).value_or("");
  const std::string service(in.line());

  std::vector<ExpectedAttribute> attrs;
  while (!in.empty() && attrs.size() < 64) {
    const uint8_t type = in.byte();
    ExpectedAttribute a;
    a.key = kKeys[(type >> 2) % std::size(kKeys)];
    switch (type & 3) {
      case 0: {
        a.raw = std::string(in.line());
        const uint8_t cut = in.byte();
        a.cut = cut == 0 ? SIZE_MAX : cut;
        a.value = a.raw;
        appendOtlpAttribute(rec.attributes, a.key, std::string_view(a.raw), a.cut);
        break;
      }
      case 1: {
        const auto v = static_cast<int64_t>(in.u64());
        a.value = v;
        appendOtlpAttribute(rec.attributes, a.key, v);
        break;
      }
      case 2: {
        const uint64_t bits = in.u64();
        double v = 0;
        std::memcpy(&v, &bits, sizeof v);
        a.value = v;
        appendOtlpAttribute(rec.attributes, a.key, v);
        break;
      }
      default: {
        if (in.flag()) {
          const bool v = in.flag();
          a.value = v;
          appendOtlpAttribute(rec.attributes, a.key, v);
          break;
        }
        const size_t n = in.byte() % 4;  // a header's field lines
        std::vector<std::string_view> views;
        for (size_t j = 0; j < n; ++j) {
          a.raws.emplace_back(in.line());
        }
        for (const auto& raw : a.raws) {
          views.push_back(raw);
        }
        const uint8_t cut = in.byte();
        a.cut = cut == 0 ? SIZE_MAX : cut;
        a.value = a.raws;
        appendOtlpStringArrayAttribute(rec.attributes, a.key, views.data(), views.size(), a.cut);
        break;
      }
    }
    ++rec.attribute_count;
    attrs.push_back(std::move(a));
  }

  std::string run;
  appendOtlpSpan(run, rec);
  WireBuffer buffered;
  appendOtlpSpan(buffered, rec);
  check(run == buffered.view(), "the two appendOtlpSpan overloads disagree");
  check(otlpSpansPrefix(run + run, 1).bytes == run.size(), "otlpSpansPrefix misreads a span");

  Resource resource;
  resource.attributes.push_back({"service.name", service});
  const OtlpRequestEncoder encoder(resource);
  std::string wire;
  encoder.encode({run, run}, wire);
  check(wire.size() <= 2 * run.size() + encoder.maxFramingBytes(), "framing over its bound");

  otlp::collector::trace::v1::ExportTraceServiceRequest req;
  check(req.ParseFromString(wire), "libprotobuf rejects the encoded request");
  check(req.resource_spans_size() == 1 && req.resource_spans(0).scope_spans_size() == 1 &&
            req.resource_spans(0).scope_spans(0).spans_size() == 2,
        "request shape differs");
  const auto& rattr = req.resource_spans(0).resource().attributes();
  check(rattr.size() == 1 && rattr[0].key() == "service.name", "resource differs");
  checkText(rattr[0].value().string_value(), service, SIZE_MAX, "service.name differs");
  for (const auto& span : req.resource_spans(0).scope_spans(0).spans()) {
    checkSpan(span, rec, attrs);
  }

  std::vector<SpanData> decoded;
  check(decodeOtlpRequest(wire, &decoded) && decoded.size() == 2,
        "decodeOtlpRequest rejects the encoded request");

  static OtlpJsonEncoder json_encoder;  // reused between requests, as the exporter does
  std::string json;
  check(json_encoder.encode(wire, json), "the JSON writer rejects the request");
  otlp::collector::trace::v1::ExportTraceServiceRequest back;
  const std::string error = sidetrace::testsupport::parseOtlpJson(json, &back);
  check(error.empty(), "OTLP/JSON does not parse back", error, json);
  google::protobuf::util::DefaultFieldComparator nan_equal;
  nan_equal.set_treat_nan_as_equal(true);  // a NaN attribute travels as "NaN"
  google::protobuf::util::MessageDifferencer differ;
  differ.set_field_comparator(&nan_equal);
  check(differ.Compare(req, back), "OTLP/JSON differs from the protobuf encoding",
        req.DebugString(), back.DebugString());
  return 0;
}
