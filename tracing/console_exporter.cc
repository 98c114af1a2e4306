#include <cmath>
#include <cstdio>
#include <iterator>
#include <string>
#include <type_traits>
#include <variant>

#include <fmt/format.h>

#include "tracing/exporter.h"
#include "tracing/otlp_encode.h"
#include "tracing/utf8.h"

namespace sidetrace::tracing {

namespace {

// The line format is a contract (a script renders these lines as trace trees): keep the field
// names, their order and their types stable.
void appendJsonDouble(std::string& out, double v) {
  if (!std::isfinite(v)) {
    out += "null";  // JSON has no NaN or infinity
  } else {
    fmt::format_to(std::back_inserter(out), "{}", v);
  }
}

std::string_view serviceName(const Resource& resource) {
  for (const auto& attr : resource.attributes) {
    if (attr.key == "service.name") {
      if (const auto* s = std::get_if<std::string>(&attr.value)) {
        return *s;
      }
    }
  }
  return {};
}

void appendSpan(std::string& out, const SpanData& span, std::string_view service) {
  out += "{\"trace_id\":\"";
  out += span.trace_id.hex();
  out += "\",\"span_id\":\"";
  out += span.span_id.hex();
  out += "\",\"parent_span_id\":\"";
  if (span.parent_span_id.valid()) {
    out += span.parent_span_id.hex();
  }
  out += "\",\"name\":";
  appendJsonString(out, span.name);
  out += ",\"kind\":\"";
  out += spanKindName(span.kind);
  fmt::format_to(std::back_inserter(out), "\",\"start_unix_nanos\":{},\"end_unix_nanos\":{}",
                 span.start_unix_nanos, span.end_unix_nanos);
  out += ",\"duration_ms\":";
  uint64_t nanos =
      span.end_unix_nanos > span.start_unix_nanos ? span.end_unix_nanos - span.start_unix_nanos : 0;
  appendJsonDouble(out, static_cast<double>(nanos) / 1e6);
  out += ",\"status\":\"";
  out += statusCodeName(span.status);
  out += "\",\"status_message\":";
  appendJsonString(out, span.status_message);
  out += ",\"service\":";
  appendJsonString(out, service);
  out += ",\"attributes\":{";
  bool first = true;
  for (const auto& attr : span.attributes) {
    if (!first) {
      out += ',';
    }
    first = false;
    appendJsonString(out, attr.key);
    out += ':';
    std::visit(
        [&out](const auto& v) {
          using T = std::decay_t<decltype(v)>;
          if constexpr (std::is_same_v<T, std::string>) {
            appendJsonString(out, v);
          } else if constexpr (std::is_same_v<T, std::vector<std::string>>) {
            out += '[';
            for (size_t i = 0; i < v.size(); ++i) {
              if (i != 0) {
                out += ',';
              }
              appendJsonString(out, v[i]);
            }
            out += ']';
          } else if constexpr (std::is_same_v<T, bool>) {
            out += v ? "true" : "false";
          } else if constexpr (std::is_same_v<T, double>) {
            appendJsonDouble(out, v);
          } else {
            fmt::format_to(std::back_inserter(out), "{}", v);
          }
        },
        attr.value);
  }
  out += '}';
  if (!span.links.empty()) {  // absent when empty: lines without links keep their shape
    out += ",\"links\":[";
    for (size_t i = 0; i < span.links.size(); ++i) {
      out += i == 0 ? "{\"trace_id\":\"" : ",{\"trace_id\":\"";
      out += span.links[i].trace_id.hex();
      out += "\",\"span_id\":\"";
      out += span.links[i].span_id.hex();
      out += "\"}";
    }
    out += ']';
  }
  out += "}\n";
}

class ConsoleExporter final : public SpanExporter {
 public:
  ExportResult exportSpans(std::string_view request, size_t /*span_count*/) override {
    // Off the hot path (a human reads this): decode with the generated classes and print.
    spans_.clear();
    Resource resource;
    if (!decodeOtlpRequest(request, &spans_, &resource)) {
      return ExportResult::Failure;
    }
    std::string_view service = serviceName(resource);
    out_.clear();
    for (const SpanData& span : spans_) {
      appendSpan(out_, span, service);
    }
    bool ok = std::fwrite(out_.data(), 1, out_.size(), stdout) == out_.size();
    ok = std::fflush(stdout) == 0 && ok;
    return ok ? ExportResult::Success : ExportResult::Failure;
  }

 private:
  std::vector<SpanData> spans_;
  std::string out_;  // reused between batches
};

}  // namespace

std::string formatConsoleSpan(const SpanData& span, const Resource& resource) {
  std::string out;
  appendSpan(out, span, serviceName(resource));
  return out;
}

std::unique_ptr<SpanExporter> makeConsoleExporter() {
  return std::make_unique<ConsoleExporter>();
}

const char* spanKindName(SpanKind kind) {
  switch (kind) {
    case SpanKind::Server:
      return "SERVER";
    case SpanKind::Client:
      return "CLIENT";
    case SpanKind::Producer:
      return "PRODUCER";
    case SpanKind::Consumer:
      return "CONSUMER";
    case SpanKind::Internal:
      break;
  }
  return "INTERNAL";
}

const char* statusCodeName(StatusCode code) {
  switch (code) {
    case StatusCode::Ok:
      return "OK";
    case StatusCode::Error:
      return "ERROR";
    case StatusCode::Unset:
      break;
  }
  return "UNSET";
}

}  // namespace sidetrace::tracing
