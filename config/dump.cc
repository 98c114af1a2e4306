#include "config/dump.h"

#include <cstdio>
#include <string_view>
#include <type_traits>

#include "config/checks.h"

namespace sidetrace::config {

namespace {

constexpr std::string_view kRedacted = "[redacted]";

// A small JSON writer: enough for nested objects, arrays and scalars with stable indentation.
class JsonWriter {
 public:
  std::string take() {
    out_ += '\n';
    return std::move(out_);
  }

  void beginObject() { open('{'); }
  void endObject() { close('}'); }
  void beginArray() { open('['); }
  void endArray() { close(']'); }

  void key(std::string_view k) {
    separate();
    appendString(k);
    out_ += ": ";
    after_key_ = true;
  }
  void string(std::string_view v) {
    separate();
    appendString(v);
  }
  void number(uint64_t v) {
    separate();
    out_ += std::to_string(v);
  }
  void number(double v) {
    separate();
    char buf[32];
    std::snprintf(buf, sizeof buf, "%.17g", v);
    out_ += buf;
  }
  void boolean(bool v) {
    separate();
    out_ += v ? "true" : "false";
  }

  // key + scalar in one call, for the common case.
  template <typename T>
  void field(std::string_view k, const T& v) {
    key(k);
    if constexpr (std::is_same_v<T, bool>) {
      boolean(v);
    } else if constexpr (std::is_arithmetic_v<T>) {
      if constexpr (std::is_floating_point_v<T>) {
        number(static_cast<double>(v));
      } else {
        number(static_cast<uint64_t>(v));
      }
    } else {
      string(v);
    }
  }

 private:
  void open(char c) {
    separate();
    out_ += c;
    ++depth_;
    first_ = true;
  }
  void close(char c) {
    --depth_;
    if (!first_) {
      newline();
    }
    out_ += c;
    first_ = false;
  }
  // Comma and newline before a value, unless it follows its key.
  void separate() {
    if (after_key_) {
      after_key_ = false;
      return;
    }
    if (depth_ == 0) {
      return;
    }
    if (!first_) {
      out_ += ',';
    }
    first_ = false;
    newline();
  }
  void newline() {
    out_ += '\n';
    out_.append(static_cast<size_t>(depth_) * 2, ' ');
  }
  // JSON text is UTF-8 (RFC 8259 §8.1) and YAML values may hold any bytes: each byte that does
  // not start a well-formed UTF-8 sequence becomes U+FFFD.
  void appendString(std::string_view s) {
    out_ += '"';
    for (size_t i = 0; i < s.size();) {
      const auto c = static_cast<unsigned char>(s[i]);
      if (c >= 0x80) {
        const size_t n = utf8SequenceLength(s, i);
        if (n == 0) {
          out_ += "\\ufffd";
          ++i;
        } else {
          out_.append(s.substr(i, n));
          i += n;
        }
        continue;
      }
      ++i;
      switch (c) {
        case '"':
          out_ += "\\\"";
          break;
        case '\\':
          out_ += "\\\\";
          break;
        case '\n':
          out_ += "\\n";
          break;
        case '\r':
          out_ += "\\r";
          break;
        case '\t':
          out_ += "\\t";
          break;
        default:
          if (c < 0x20) {
            char buf[8];
            std::snprintf(buf, sizeof buf, "\\u%04x", c);
            out_ += buf;
          } else {
            out_ += static_cast<char>(c);
          }
      }
    }
    out_ += '"';
  }

  // Length of the well-formed UTF-8 sequence starting at s[i] (RFC 3629: no overlong forms, no
  // surrogates, nothing above U+10FFFF), or 0 when there is none.
  static size_t utf8SequenceLength(std::string_view s, size_t i) {
    const auto byte = [&](size_t k) { return static_cast<unsigned char>(s[i + k]); };
    const unsigned char c = byte(0);
    size_t n = 0;
    unsigned char lo = 0x80, hi = 0xbf;  // the range of the second byte
    if (c >= 0xc2 && c <= 0xdf) {
      n = 2;
    } else if (c >= 0xe0 && c <= 0xef) {
      n = 3;
      lo = c == 0xe0 ? 0xa0 : lo;
      hi = c == 0xed ? 0x9f : hi;
    } else if (c >= 0xf0 && c <= 0xf4) {
      n = 4;
      lo = c == 0xf0 ? 0x90 : lo;
      hi = c == 0xf4 ? 0x8f : hi;
    } else {
      return 0;
    }
    if (s.size() - i < n || byte(1) < lo || byte(1) > hi) {
      return 0;
    }
    for (size_t k = 2; k < n; ++k) {
      if (byte(k) < 0x80 || byte(k) > 0xbf) {
        return 0;
      }
    }
    return n;
  }

  std::string out_;
  int depth_ = 0;
  bool first_ = true;
  bool after_key_ = false;
};

// "https://user:secret@host:4318/v1/traces" → "https://user:[redacted]@host:4318/v1/traces".
std::string redactUrlPassword(const std::string& url) {
  size_t scheme = url.find("://");
  size_t start = scheme == std::string::npos ? 0 : scheme + 3;
  size_t end = url.find_first_of("/?#", start);
  size_t at = url.rfind('@', end == std::string::npos ? url.size() : end);
  if (at == std::string::npos || at < start) {
    return url;
  }
  size_t colon = url.find(':', start);
  if (colon == std::string::npos || colon > at) {
    return url;
  }
  return url.substr(0, colon + 1) + std::string(kRedacted) + url.substr(at);
}

void writeRouteMatch(JsonWriter& w, const RouteMatch& m) {
  w.beginObject();
  switch (m.path_kind) {
    case RouteMatch::PathKind::Any:
      break;
    case RouteMatch::PathKind::Exact:
      w.field("path", m.path);
      break;
    case RouteMatch::PathKind::Prefix:
      w.field("prefix", m.path);
      break;
    case RouteMatch::PathKind::Regex:
      w.field("regex", m.path_regex.source);
      break;
  }
  if (!m.host.empty()) {
    w.field("host", m.host);
  }
  if (!m.method.empty()) {
    w.field("method", m.method);
  }
  if (!m.headers.empty()) {
    w.key("headers");
    w.beginArray();
    for (const auto& h : m.headers) {
      w.beginObject();
      w.field("name", h.name);
      switch (h.kind) {
        case HeaderMatch::Kind::Present:
          w.field("present", true);
          break;
        case HeaderMatch::Kind::Exact:
          w.field("exact", h.value);
          break;
        case HeaderMatch::Kind::Prefix:
          w.field("prefix", h.value);
          break;
        case HeaderMatch::Kind::Regex:
          w.field("regex", h.regex.source);
          break;
      }
      w.endObject();
    }
    w.endArray();
  }
  w.endObject();
}

void writeSampler(JsonWriter& w, const SamplerConfig& s) {
  w.beginObject();
  w.field("type", s.type);
  w.field("ratio", s.ratio);
  w.endObject();
}

void writeStrings(JsonWriter& w, std::string_view key, const std::vector<std::string>& values) {
  w.key(key);
  w.beginArray();
  for (const auto& v : values) {
    w.string(v);
  }
  w.endArray();
}

std::string_view traceContextName(TraceContextTrust t) {
  switch (t) {
    case TraceContextTrust::Restart:
      return "restart";
    case TraceContextTrust::Ignore:
      return "ignore";
    case TraceContextTrust::Trust:
      break;
  }
  return "trust";
}

// A route's own tracing block with the values in effect: its sampler or the tracing section's,
// its header lists completed with the tracing section's.
void writeRouteTracing(JsonWriter& w, const RouteTracing& rt, const TracingConfig& t) {
  w.key("tracing");
  w.beginObject();
  w.field("enabled", rt.enabled);
  w.key("sampler");
  writeSampler(w, rt.sampler ? *rt.sampler : t.sampler);
  w.key("attributes");
  w.beginObject();
  for (const auto& [k, v] : rt.attributes) {
    w.field(k, v);
  }
  w.endObject();
  writeStrings(w, "request_headers", rt.request_headers);
  writeStrings(w, "response_headers", rt.response_headers);
  w.endObject();
}

void writeListener(JsonWriter& w, const Listener& l, const TracingConfig& t) {
  w.beginObject();
  w.field("name", l.name);
  w.field("address", l.address.str());
  w.field("trace_context", traceContextName(l.trace_context));
  if (l.tls) {
    w.key("tls");
    w.beginObject();
    w.field("cert", l.tls->cert);
    w.field("key", kRedacted);
    w.key("certificates");
    w.beginArray();
    for (const auto& c : l.tls->certificates) {
      w.beginObject();
      w.field("cert", c.cert);
      w.field("key", kRedacted);
      w.endObject();
    }
    w.endArray();
    w.field("client_ca", l.tls->client_ca);
    w.field("require_client_cert", l.tls->require_client_cert);
    w.endObject();
  }
  w.key("routes");
  w.beginArray();
  for (const auto& r : l.routes) {
    w.beginObject();
    w.field("name", r.name);
    w.key("match");
    writeRouteMatch(w, r.match);
    if (r.direct_response) {
      w.key("direct_response");
      w.beginObject();
      w.field("status", r.direct_response->status);
      w.field("body", r.direct_response->body);
      w.endObject();
    } else {
      w.field("cluster", r.cluster);
      w.field("timeout", formatDuration(r.timeout));
      if (r.retry_policy) {
        const auto& p = *r.retry_policy;
        w.key("retry_policy");
        w.beginObject();
        w.key("retry_on");
        w.beginArray();
        for (const auto& name : detail::retryOnNames(p.retry_on)) {
          w.string(name);
        }
        w.endArray();
        w.field("num_retries", p.num_retries);
        w.field("per_try_timeout", formatDuration(p.per_try_timeout));
        w.key("retriable_status_codes");
        w.beginArray();
        for (int st : p.retriable_status_codes) {
          w.number(static_cast<uint64_t>(st));
        }
        w.endArray();
        w.key("back_off");
        w.beginObject();
        w.field("base_interval", formatDuration(p.base_interval));
        w.field("max_interval", formatDuration(p.max_interval));
        w.endObject();
        w.endObject();
      }
    }
    if (r.tracing) {
      writeRouteTracing(w, *r.tracing, t);
    }
    w.endObject();
  }
  w.endArray();
  w.endObject();
}

void writeCluster(JsonWriter& w, const Cluster& c) {
  w.beginObject();
  w.field("name", c.name);
  w.key("endpoints");
  w.beginArray();
  for (const auto& e : c.endpoints) {
    // As written in YAML: the plain string unless a weight was given.
    if (e.weight == 1) {
      w.string(e.str());
    } else {
      w.beginObject();
      w.field("address", e.str());
      w.field("weight", e.weight);
      w.endObject();
    }
  }
  w.endArray();
  w.field("protocol", c.protocol);
  w.field("lb", c.lb);
  w.field("connect_timeout", formatDuration(c.connect_timeout));
  w.field("max_idle_connections", c.max_idle_connections);
  w.field("idle_timeout", formatDuration(c.idle_timeout));
  w.field("max_connection_duration", formatDuration(c.max_connection_duration));
  w.field("dns_refresh_rate", formatDuration(c.dns_refresh_rate));
  if (c.tls) {
    w.key("tls");
    w.beginObject();
    w.field("ca_file", c.tls->ca_file);
    w.field("sni", c.tls->sni);
    w.field("cert", c.tls->cert);
    w.field("key", c.tls->key.empty() ? std::string_view() : kRedacted);
    w.field("insecure_skip_verify", c.tls->insecure_skip_verify);
    w.endObject();
  }
  w.key("retry_budget");
  w.beginObject();
  w.field("budget_percent", c.retry_budget.budget_percent);
  w.field("min_retry_concurrency", c.retry_budget.min_retry_concurrency);
  w.endObject();
  if (c.health_check) {
    const auto& h = *c.health_check;
    w.key("health_check");
    w.beginObject();
    w.field("type", h.type);
    w.field("path", h.path);
    w.key("expected_statuses");
    w.beginArray();
    for (int st : h.expected_statuses) {
      w.number(static_cast<uint64_t>(st));
    }
    w.endArray();
    w.field("service_name", h.service_name);
    w.field("interval", formatDuration(h.interval));
    w.field("timeout", formatDuration(h.timeout));
    w.field("healthy_threshold", h.healthy_threshold);
    w.field("unhealthy_threshold", h.unhealthy_threshold);
    w.field("panic", h.panic);
    w.endObject();
  }
  {  // always: a cluster without a block runs kDefaultOutlierDetection
    const auto& o = c.outlierDetection();
    w.key("outlier_detection");
    w.beginObject();
    w.field("consecutive_5xx", o.consecutive_5xx);
    w.field("consecutive_connect_failures", o.consecutive_connect_failures);
    w.field("base_ejection_time", formatDuration(o.base_ejection_time));
    w.field("max_ejection_time", formatDuration(o.max_ejection_time));
    w.field("max_ejection_percent", o.max_ejection_percent);
    w.endObject();
  }
  const auto& cb = c.circuit_breakers;
  if (cb != CircuitBreakerConfig{}) {
    w.key("circuit_breakers");
    w.beginObject();
    auto limit = [&](std::string_view k, uint32_t v) {
      if (v != kUnlimited) {
        w.field(k, v);
      }
    };
    limit("max_connections", cb.max_connections);
    limit("max_pending_requests", cb.max_pending_requests);
    limit("max_requests", cb.max_requests);
    limit("max_retries", cb.max_retries);
    w.endObject();
  }
  w.endObject();
}

void writeIgnoreRule(JsonWriter& w, const IgnoreRule& rule) {
  w.beginObject();
  switch (rule.kind) {
    case IgnoreRule::Kind::Path:
      w.field("path", rule.value);
      break;
    case IgnoreRule::Kind::Prefix:
      w.field("prefix", rule.value);
      break;
    case IgnoreRule::Kind::Regex:
      w.field("regex", rule.regex.source);
      break;
    case IgnoreRule::Kind::Header:
      w.key("header");
      w.beginObject();
      w.field("name", rule.header);
      w.field("value", rule.value);
      w.endObject();
      break;
  }
  w.endObject();
}

void writeTracing(JsonWriter& w, const TracingConfig& t) {
  w.beginObject();
  w.field("enabled", t.enabled);
  w.field("service_name", t.service_name);
  w.key("resource");
  w.beginObject();
  for (const auto& [k, v] : t.resource) {
    w.field(k, v);
  }
  w.endObject();
  w.key("propagators");
  w.beginArray();
  for (const auto& p : t.propagators) {
    w.string(p);
  }
  w.endArray();
  w.key("sampler");
  writeSampler(w, t.sampler);
  w.key("ignore");
  w.beginArray();
  for (const auto& rule : t.ignore) {
    writeIgnoreRule(w, rule);
  }
  w.endArray();
  const auto& e = t.exporter;
  w.key("exporter");
  w.beginObject();
  w.field("protocol", e.protocol);
  w.field("endpoint", redactUrlPassword(e.endpoint));
  w.key("headers");
  w.beginObject();
  for (const auto& [k, v] : e.headers) {
    w.field(k, kRedacted);
  }
  w.endObject();
  w.field("timeout", formatDuration(e.timeout));
  w.field("compression", e.compression.empty() ? std::string("none") : e.compression);
  w.key("tls");
  w.beginObject();
  w.field("ca_file", e.tls.ca_file);
  w.field("insecure_skip_verify", e.tls.insecure_skip_verify);
  w.endObject();
  w.endObject();
  w.key("batch");
  w.beginObject();
  w.field("max_queue_size", t.batch.max_queue_size);
  w.field("max_export_batch_size", t.batch.max_export_batch_size);
  w.field("schedule_delay", formatDuration(t.batch.schedule_delay));
  w.field("export_timeout", formatDuration(t.batch.export_timeout));
  w.field("max_queue_bytes", t.batch.max_queue_bytes);
  w.field("max_export_bytes", t.batch.max_export_bytes);
  w.endObject();
  w.key("span_limits");
  w.beginObject();
  w.field("attribute_value_length", t.span_limits.attribute_value_length);
  w.field("attribute_count", t.span_limits.attribute_count);
  w.endObject();
  writeStrings(w, "request_headers", t.request_headers);
  writeStrings(w, "response_headers", t.response_headers);
  writeStrings(w, "allow_sensitive_headers", t.allow_sensitive_headers);
  w.field("server_timing", t.server_timing);
  w.endObject();
}

}  // namespace

std::string formatDuration(Duration d) {
  const auto ms = static_cast<uint64_t>(d.count());
  if (ms != 0 && ms % 3'600'000 == 0) {
    return std::to_string(ms / 3'600'000) + "h";
  }
  if (ms != 0 && ms % 60'000 == 0) {
    return std::to_string(ms / 60'000) + "m";
  }
  if (ms != 0 && ms % 1000 == 0) {
    return std::to_string(ms / 1000) + "s";
  }
  return std::to_string(ms) + "ms";
}

std::string dumpConfigJson(const Config& cfg) {
  JsonWriter w;
  w.beginObject();
  w.key("admin");
  w.beginObject();
  w.field("enabled", cfg.admin.enabled);
  w.field("address", cfg.admin.address.str());
  w.key("tracez");
  w.beginObject();
  w.field("max_bytes", cfg.admin.tracez_max_bytes);
  w.endObject();
  w.endObject();
  w.field("workers", cfg.workers);
  w.field("log_level", cfg.log_level);
  w.field("log_format", cfg.log_format);
  w.key("listeners");
  w.beginArray();
  for (const auto& l : cfg.listeners) {
    if (!l.egress) {  // made from the egress block, dumped as that
      writeListener(w, l, cfg.tracing);
    }
  }
  w.endArray();
  w.key("clusters");
  w.beginArray();
  for (const auto& c : cfg.clusters) {
    if (!c.egress) {
      writeCluster(w, c);
    }
  }
  w.endArray();
  if (cfg.egress) {
    w.key("egress");
    w.beginObject();
    w.field("address", cfg.egress->address.str());
    w.key("allow");
    w.beginArray();
    for (const auto& a : cfg.egress->allow) {
      w.string(a);
    }
    w.endArray();
    w.field("timeout", formatDuration(cfg.egress->timeout));
    w.field("connect_timeout", formatDuration(cfg.egress->connect_timeout));
    w.field("process", cfg.egress->process);
    w.endObject();
  }
  w.key("tracing");
  writeTracing(w, cfg.tracing);
  const auto& lim = cfg.limits;
  w.key("limits");
  w.beginObject();
  w.field("max_request_headers_bytes", lim.max_request_headers_bytes);
  w.field("max_request_headers_count", lim.max_request_headers_count);
  w.field("request_header_timeout", formatDuration(lim.request_header_timeout));
  w.field("idle_timeout", formatDuration(lim.idle_timeout));
  w.field("drain_timeout", formatDuration(lim.drain_timeout));
  w.field("buffer_bytes", lim.buffer_bytes);
  w.field("max_concurrent_streams", lim.max_concurrent_streams);
  w.field("max_connections", lim.max_connections);
  w.endObject();
  w.key("access_log");
  w.beginObject();
  w.field("path", cfg.access_log.path);  // "" = off
  w.field("format", cfg.access_log.format);
  w.field("max_queue_bytes", cfg.access_log.max_queue_bytes);
  w.endObject();
  w.endObject();
  return w.take();
}

}  // namespace sidetrace::config
