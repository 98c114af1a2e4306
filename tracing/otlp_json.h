#pragma once
// OTLP/JSON (the http/json exporter's body): the protobuf JSON mapping with OTLP's deviations
// (https://opentelemetry.io/docs/specs/otlp/#json-protobuf-encoding): lowerCamelCase keys,
// traceId / spanId / parentSpanId as lower-case hex instead of base64, enums as integers. 64-bit
// integers are decimal strings and other bytes base64, as in proto3 JSON; default values are
// omitted. Fields are read with the generated classes, so every field of the schema is written,
// whatever the span path put in the request.

#include <memory>
#include <string>
#include <string_view>

namespace sidetrace::tracing {

class OtlpJsonEncoder {
 public:
  OtlpJsonEncoder();
  ~OtlpJsonEncoder();
  OtlpJsonEncoder(const OtlpJsonEncoder&) = delete;
  OtlpJsonEncoder& operator=(const OtlpJsonEncoder&) = delete;

  // Overwrites out with the JSON of a serialized ExportTraceServiceRequest. False (out empty) if
  // the bytes are not a valid message. Strings are repaired to valid UTF-8 (tracing/utf8.h).
  bool encode(std::string_view request, std::string& out);

 private:
  struct Impl;  // keeps the generated message (reused between calls) out of this header
  std::unique_ptr<Impl> impl_;
};

}  // namespace sidetrace::tracing
