#pragma once
// Test support: reads an OTLP/JSON document with protobuf's own JSON parser, an implementation
// independent of sidetrace's writer (tracing/otlp_json.cc). protobuf speaks proto3 JSON, where
// bytes are base64; OTLP/JSON writes trace and span ids as hex. So the document is first parsed
// into a generic google.protobuf.Value, the OTLP rules are checked on it (hex ids of the right
// length, lowerCamelCase keys, 64-bit integers as strings, enums as integers), the ids are
// rewritten to base64, and the result is parsed into the generated message. Header-only: used by
// the tracing unit tests and the integration receiver.

#include <google/protobuf/struct.pb.h>
#include <google/protobuf/stubs/strutil.h>
#include <google/protobuf/util/json_util.h>

#include <string>
#include <string_view>

#include "opentelemetry/proto/collector/trace/v1/trace_service.pb.h"

namespace sidetrace::testsupport {

namespace detail {

inline bool fromHex(std::string_view hex, std::string& out) {
  auto digit = [](char c) -> int {
    if (c >= '0' && c <= '9') {
      return c - '0';
    }
    if (c >= 'a' && c <= 'f') {
      return c - 'a' + 10;
    }
    return -1;  // upper case is not what OTLP/JSON writers should emit
  };
  if (hex.size() % 2 != 0) {
    return false;
  }
  out.clear();
  for (size_t i = 0; i < hex.size(); i += 2) {
    int hi = digit(hex[i]);
    int lo = digit(hex[i + 1]);
    if (hi < 0 || lo < 0) {
      return false;
    }
    out += static_cast<char>(hi * 16 + lo);
  }
  return true;
}

// Checks and rewrites `v` in place; the first problem goes to *error (with the key path).
inline void rewrite(google::protobuf::Value& v, const std::string& path, std::string* error) {
  if (!error->empty()) {
    return;
  }
  if (v.has_list_value()) {
    auto& list = *v.mutable_list_value()->mutable_values();
    for (int i = 0; i < list.size(); ++i) {
      rewrite(list[i], path + "[" + std::to_string(i) + "]", error);
    }
    return;
  }
  if (!v.has_struct_value()) {
    return;
  }
  for (auto& [key, field] : *v.mutable_struct_value()->mutable_fields()) {
    const std::string sub = path + "." + key;
    if (key.find('_') != std::string::npos) {
      *error = sub + ": not a lowerCamelCase field name";
      return;
    }
    if (key == "traceId" || key == "spanId" || key == "parentSpanId") {
      const size_t want = key == "traceId" ? 32 : 16;
      std::string bytes;
      if (field.kind_case() != google::protobuf::Value::kStringValue ||
          field.string_value().size() != want || !fromHex(field.string_value(), bytes)) {
        *error = sub + ": expected " + std::to_string(want) + " lower-case hex digits";
        return;
      }
      std::string b64;
      google::protobuf::Base64Escape(bytes, &b64);
      field.set_string_value(b64);
    } else if (key == "startTimeUnixNano" || key == "endTimeUnixNano" || key == "timeUnixNano" ||
               key == "intValue") {
      if (field.kind_case() != google::protobuf::Value::kStringValue) {
        *error = sub + ": a 64-bit integer must be a JSON string";
        return;
      }
    } else if (key == "kind" || key == "code") {
      if (field.kind_case() != google::protobuf::Value::kNumberValue) {
        *error = sub + ": an enum must be an integer";
        return;
      }
    } else {
      rewrite(field, sub, error);
    }
  }
}

}  // namespace detail

// Parses OTLP/JSON into `out`. Returns "" on success, else what is wrong.
inline std::string parseOtlpJson(
    const std::string& json,
    opentelemetry::proto::collector::trace::v1::ExportTraceServiceRequest* out) {
  google::protobuf::Value doc;
  auto status = google::protobuf::util::JsonStringToMessage(json, &doc);
  if (!status.ok()) {
    return "not JSON: " + status.ToString();
  }
  std::string error;
  detail::rewrite(doc, "$", &error);
  if (!error.empty()) {
    return error;
  }
  std::string proto3_json;
  status = google::protobuf::util::MessageToJsonString(doc, &proto3_json);
  if (!status.ok()) {
    return "cannot re-serialize: " + status.ToString();
  }
  out->Clear();
  status = google::protobuf::util::JsonStringToMessage(proto3_json, out);  // unknown keys: error
  if (!status.ok()) {
    return "not an ExportTraceServiceRequest: " + status.ToString();
  }
  return "";
}

}  // namespace sidetrace::testsupport
