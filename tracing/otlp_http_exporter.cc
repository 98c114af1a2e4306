// OTLP/HTTP exporter (https://opentelemetry.io/docs/specs/otlp/#otlphttp): the protocol half. The
// bytes travel through an HttpTransport (the proxy's asio client in production); this file decides
// what to send and what to do with the answer, in the same shape as the gRPC exporter: one export
// at a time on the export thread, the same back-off, partial success logged and counted.

#include <google/protobuf/util/json_util.h>

#include <algorithm>
#include <cctype>
#include <chrono>
#include <random>
#include <thread>

#include "opentelemetry/proto/collector/trace/v1/trace_service.pb.h"
#include "tracing/export_retry.h"
#include "tracing/exporter.h"
#include "tracing/gzip.h"
#include "tracing/log.h"
#include "tracing/otlp_json.h"

namespace sidetrace::tracing {

namespace {

namespace collector = opentelemetry::proto::collector::trace::v1;
using SteadyClock = std::chrono::steady_clock;

// The OTLP/HTTP spec's retryable responses; any other 4xx/5xx will not get better by resending.
bool retryableStatus(int status) {
  return status == 429 || status == 502 || status == 503 || status == 504;
}

// RFC 9110 token characters: a header name the transport can write as-is.
bool validHeaderName(std::string_view name) {
  return !name.empty() && std::all_of(name.begin(), name.end(), [](char c) {
    return std::isalnum(static_cast<unsigned char>(c)) ||
           std::string_view("!#$%&'*+-.^_`|~").find(c) != std::string_view::npos;
  });
}

// No CR, LF or other control characters: nothing a value could smuggle into the request head.
bool validHeaderValue(std::string_view value) {
  return std::all_of(value.begin(), value.end(), [](char c) {
    auto u = static_cast<unsigned char>(c);
    return u == '\t' || (u >= 0x20 && u != 0x7f);
  });
}

bool isTransportHeader(std::string_view lower) {
  return lower == "host" || lower == "content-length" || lower == "transfer-encoding" ||
         lower == "connection" || lower == "content-type" || lower == "content-encoding";
}

std::string lowerAscii(std::string_view s) {
  std::string out(s);
  std::transform(out.begin(), out.end(), out.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  return out;
}

class OtlpHttpExporter final : public SpanExporter {
 public:
  OtlpHttpExporter(const config::ExporterConfig& cfg, std::unique_ptr<HttpTransport> transport,
                   ExportClock clock)
      : transport_(std::move(transport)),
        clock_(std::move(clock)),
        timeout_(std::max(cfg.timeout, config::Duration{1})),
        json_(cfg.protocol == "http/json"),
        gzip_(cfg.compression == "gzip"),
        rng_(std::random_device{}()) {
    if (!clock_.now) {
      clock_.now = [] { return SteadyClock::now(); };
    }
    if (!clock_.sleep) {
      clock_.sleep = [](std::chrono::milliseconds d) { std::this_thread::sleep_for(d); };
    }
    headers_.emplace_back("Content-Type", json_ ? "application/json" : "application/x-protobuf");
    if (gzip_) {
      headers_.emplace_back("Content-Encoding", "gzip");
    }
    // The OTLP exporter spec asks for the exporter's name and version in User-Agent; a configured
    // User-Agent replaces it.
    std::string user_agent = "sidetrace/" SIDETRACE_VERSION;
    for (const auto& [key, value] : cfg.headers) {
      const std::string lower = lowerAscii(key);
      if (!validHeaderName(key) || !validHeaderValue(value) || isTransportHeader(lower)) {
        log().warn("otlp exporter: header '{}' is not a valid extra HTTP header; not sent", key);
      } else if (lower == "user-agent") {
        user_agent = value;
      } else {
        headers_.emplace_back(key, value);
      }
    }
    headers_.emplace_back("User-Agent", std::move(user_agent));
    // Without the query: some collectors take an API key there.
    log().info("otlp exporter: {} to {}{}", json_ ? "http/json" : "http/protobuf",
               std::string_view(cfg.endpoint).substr(0, cfg.endpoint.find('?')),
               gzip_ ? " (gzip)" : "");
  }

  ~OtlpHttpExporter() override { shutdown(); }

  ExportResult exportSpans(std::string_view request, size_t span_count) override {
    if (span_count == 0) {
      return ExportResult::Success;
    }
    const auto deadline = std::min(clock_.now() + timeout_, deadline_);
    std::string_view body = request;
    if (json_) {
      if (!json_encoder_.encode(request, json_body_)) {
        warn_.warn("otlp exporter: cannot re-encode {} span(s) as JSON; dropped", span_count);
        return ExportResult::Failure;
      }
      body = json_body_;
    }
    if (gzip_) {
      if (!gzip_encoder_.compress(body, gzip_body_)) {
        warn_.warn("otlp exporter: gzip failed; {} span(s) dropped", span_count);
        return ExportResult::Failure;
      }
      body = gzip_body_;
    }
    ExportBackoff backoff(rng_);
    int attempts = 0;
    while (true) {
      ++attempts;
      HttpExchangeResult r = transport_->post(headers_, body, deadline);
      if (r.status >= 200 && r.status < 300) {
        countPartialSuccess(r, span_count);
        return ExportResult::Success;
      }
      // No response (refused, reset, timed out, bad TLS) is retried like a 503: the spec asks
      // clients to resend when the server disconnects without an answer.
      const bool retryable = r.status == 0 || retryableStatus(r.status);
      auto wait = backoff.next();
      if (retryable && !r.retry_after.empty() && (r.status == 429 || r.status == 503)) {
        // The collector said when to come back; waiting less would only be throttled again.
        if (auto after = parseRetryAfter(r.retry_after, std::chrono::system_clock::now())) {
          wait = *after;
        }
      }
      if (!retryable || clock_.now() + wait >= deadline) {
        warn_.warn("otlp exporter: export of {} span(s) failed after {} attempt(s): {}", span_count,
                   attempts, describe(r));
        return ExportResult::Failure;
      }
      log().debug("otlp exporter: attempt {} failed ({}); retrying in {} ms", attempts, describe(r),
                  wait.count());
      clock_.sleep(wait);
    }
  }

  void shutdown() override {
    if (transport_) {
      transport_->close();
    }
  }

 private:
  static std::string describe(const HttpExchangeResult& r) {
    if (r.status == 0) {
      return r.error.empty() ? "no response" : r.error;
    }
    std::string text = "HTTP " + std::to_string(r.status);
    // Error bodies are a google.rpc.Status; its text (protobuf or JSON) helps a human enough.
    std::string_view body = std::string_view(r.body).substr(0, 200);
    if (!body.empty() &&
        std::all_of(body.begin(), body.end(), [](char c) { return c >= 0x20 && c < 0x7f; })) {
      text += ": ";
      text += body;
    }
    return text;
  }

  // A 2xx may carry ExportTraceServiceResponse.partial_success: the spans it names were dropped
  // by the collector although the request succeeded. An empty or unreadable body means none.
  void countPartialSuccess(const HttpExchangeResult& r, size_t span_count) {
    if (r.body.empty()) {
      return;
    }
    response_.Clear();
    bool parsed = false;
    if (r.content_type.find("json") != std::string::npos) {
      google::protobuf::util::JsonParseOptions options;
      options.ignore_unknown_fields = true;  // newer collectors may add fields
      parsed = google::protobuf::util::JsonStringToMessage(r.body, &response_, options).ok();
    } else {
      parsed = response_.ParseFromString(r.body);
    }
    if (!parsed || !response_.has_partial_success()) {
      return;
    }
    const auto& partial = response_.partial_success();
    if (partial.rejected_spans() > 0) {
      rejected_spans_ += static_cast<uint64_t>(partial.rejected_spans());
      warn_.warn("otlp exporter: collector rejected {} of {} span(s): {}", partial.rejected_spans(),
                 span_count, partial.error_message());
    } else if (!partial.error_message().empty()) {
      warn_.warn("otlp exporter: collector accepted all spans with a warning: {}",
                 partial.error_message());
    }
  }

  std::unique_ptr<HttpTransport> transport_;
  ExportClock clock_;
  HttpHeaders headers_;
  std::chrono::milliseconds timeout_;
  bool json_;
  bool gzip_;
  std::mt19937 rng_;
  OtlpJsonEncoder json_encoder_;
  GzipCompressor gzip_encoder_;
  std::string json_body_;  // capacity reused between batches
  std::string gzip_body_;
  collector::ExportTraceServiceResponse response_;
  WarnLimiter warn_;
};

}  // namespace

std::unique_ptr<SpanExporter> makeOtlpHttpExporter(const config::ExporterConfig& cfg,
                                                   std::unique_ptr<HttpTransport> transport,
                                                   ExportClock clock) {
  return std::make_unique<OtlpHttpExporter>(cfg, std::move(transport), std::move(clock));
}

}  // namespace sidetrace::tracing
