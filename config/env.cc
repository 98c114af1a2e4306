// OTEL_* environment variables (ARCHITECTURE §4) as the OpenTelemetry SDK configuration spec
// defines them. Deviation on purpose: a value the spec would "ignore with a warning" is a
// ConfigError here, because a proxy that silently runs with the wrong sampler or exporter is worse
// than one that refuses to start (exit 1 names the variable).

#include <cstdlib>
#include <string>
#include <utility>
#include <vector>

#include "config/checks.h"
#include "config/load.h"

namespace sidetrace::config {

namespace {

using KeyValues = std::vector<std::pair<std::string, std::string>>;

// The spec says an empty value means unset.
std::optional<std::string> get(const EnvLookup& env, const std::string& name) {
  auto v = env(name);
  if (!v || v->empty()) {
    return std::nullopt;
  }
  return v;
}

// Traces-specific variable wins over the general one (OTEL_EXPORTER_OTLP_TRACES_X > _X).
std::optional<std::pair<std::string, std::string>> getOtlp(const EnvLookup& env,
                                                           const std::string& suffix) {
  std::string specific = "OTEL_EXPORTER_OTLP_TRACES_" + suffix;
  if (auto v = get(env, specific)) {
    return std::make_pair(specific, *v);
  }
  std::string general = "OTEL_EXPORTER_OTLP_" + suffix;
  if (auto v = get(env, general)) {
    return std::make_pair(general, *v);
  }
  return std::nullopt;
}

[[noreturn]] void fail(const std::string& var, const std::string& value, const std::string& msg) {
  throw ConfigError(var + "='" + value + "': " + msg);
}

// "k1=v1,k2=v2" with percent-encoded keys and values (W3C baggage octets).
KeyValues parseKeyValues(const std::string& var, const std::string& value) {
  KeyValues out;
  for (const auto& item : detail::split(value, ',')) {
    std::string entry = detail::trim(item);
    if (entry.empty()) {
      continue;
    }
    size_t eq = entry.find('=');
    if (eq == std::string::npos) {
      fail(var, value, "expected key=value pairs separated by commas, got '" + entry + "'");
    }
    std::string k = detail::percentDecode(detail::trim(entry.substr(0, eq)));
    std::string v = detail::percentDecode(detail::trim(entry.substr(eq + 1)));
    if (k.empty()) {
      fail(var, value, "empty key in '" + entry + "'");
    }
    out.emplace_back(std::move(k), std::move(v));
  }
  return out;
}

void upsert(KeyValues& kvs, const std::string& key, const std::string& value) {
  for (auto& kv : kvs) {
    if (kv.first == key) {
      kv.second = value;
      return;
    }
  }
  kvs.emplace_back(key, value);
}

Duration positiveMs(const std::string& var, const std::string& value) {
  auto n = detail::parseUint32(detail::trim(value));
  if (!n || *n == 0) {
    fail(var, value, "expected a positive integer number of milliseconds");
  }
  return Duration(*n);
}

uint32_t positiveCount(const std::string& var, const std::string& value) {
  auto n = detail::parseUint32(detail::trim(value));
  if (!n || *n == 0) {
    fail(var, value, "expected a positive integer");
  }
  return *n;
}

uint32_t count(const std::string& var, const std::string& value) {
  auto n = detail::parseUint32(detail::trim(value));
  if (!n) {
    fail(var, value, "expected a non-negative integer");
  }
  return *n;
}

// The span-specific variable wins over the general attribute one (the SDK spec's rule).
std::optional<std::pair<std::string, std::string>> getLimit(const EnvLookup& env,
                                                            const std::string& specific,
                                                            const std::string& general) {
  for (const std::string& name : {specific, general}) {
    if (auto v = get(env, name)) {
      return std::make_pair(name, *v);
    }
  }
  return std::nullopt;
}

void applySpanLimitsEnv(SpanLimits& l, const EnvLookup& env) {
  if (auto v = getLimit(env, "OTEL_SPAN_ATTRIBUTE_VALUE_LENGTH_LIMIT",
                        "OTEL_ATTRIBUTE_VALUE_LENGTH_LIMIT")) {
    l.attribute_value_length = positiveCount(v->first, v->second);
  }
  if (auto v = getLimit(env, "OTEL_SPAN_ATTRIBUTE_COUNT_LIMIT", "OTEL_ATTRIBUTE_COUNT_LIMIT")) {
    l.attribute_count = count(v->first, v->second);
  }
}

}  // namespace

EnvLookup processEnv() {
  return [](const std::string& name) -> std::optional<std::string> {
    const char* v = std::getenv(name.c_str());
    if (v == nullptr) {
      return std::nullopt;
    }
    return std::string(v);
  };
}

void applyEnv(Config& cfg, const EnvLookup& env) {
  TracingConfig& t = cfg.tracing;

  if (auto v = get(env, "OTEL_RESOURCE_ATTRIBUTES")) {
    for (auto& [k, val] : parseKeyValues("OTEL_RESOURCE_ATTRIBUTES", *v)) {
      if (k == "service.name") {
        t.service_name = val;  // OTEL_SERVICE_NAME, below, still wins
      } else {
        upsert(t.resource, k, val);
      }
    }
  }
  if (auto v = get(env, "OTEL_SERVICE_NAME")) {
    t.service_name = *v;
  }

  if (auto v = get(env, "OTEL_TRACES_SAMPLER")) {
    std::string type = detail::trim(*v);
    if (std::string err = detail::checkSamplerType(type); !err.empty()) {
      fail("OTEL_TRACES_SAMPLER", *v, err);
    }
    t.sampler.type = type;
  }
  if (auto v = get(env, "OTEL_TRACES_SAMPLER_ARG")) {
    auto ratio = detail::parseDouble(detail::trim(*v));
    if (!ratio || !(*ratio >= 0.0 && *ratio <= 1.0)) {
      fail("OTEL_TRACES_SAMPLER_ARG", *v, "expected a sampling ratio between 0 and 1");
    }
    t.sampler.ratio = *ratio;
  }

  if (auto v = get(env, "OTEL_PROPAGATORS")) {
    std::vector<std::string> names;
    for (const auto& item : detail::split(*v, ',')) {
      std::string name = detail::trim(item);
      if (name.empty()) {
        continue;
      }
      if (std::string err = detail::checkPropagator(name); !err.empty()) {
        fail("OTEL_PROPAGATORS", *v, err);
      }
      names.push_back(name);
    }
    t.propagators = detail::normalizePropagators(names);
  }

  ExporterConfig& e = t.exporter;
  auto endpoint = getOtlp(env, "ENDPOINT");
  std::string protocol = "grpc";
  if (auto p = getOtlp(env, "PROTOCOL")) {
    protocol = detail::trim(p->second);
    if (protocol != "grpc" && protocol != "http/protobuf" && protocol != "http/json") {
      fail(p->first, p->second, "expected grpc, http/protobuf or http/json");
    }
  }
  if (endpoint) {
    e.endpoint = detail::trim(endpoint->second);
    // The general variable is a base URL for OTLP/HTTP; the signal path is appended (spec).
    if (endpoint->first == "OTEL_EXPORTER_OTLP_ENDPOINT" && protocol != "grpc") {
      e.endpoint += (e.endpoint.ends_with('/') ? "" : "/");
      e.endpoint += "v1/traces";
    }
  }

  std::optional<std::string> exporter = get(env, "OTEL_TRACES_EXPORTER");
  std::string chosen;
  if (exporter) {
    chosen = detail::trim(*exporter);
    if (chosen.find(',') != std::string::npos) {
      fail("OTEL_TRACES_EXPORTER", *exporter, "only one exporter at a time is supported");
    }
    if (chosen != "otlp" && chosen != "console" && chosen != "none") {
      fail("OTEL_TRACES_EXPORTER", *exporter, "expected otlp, console or none");
    }
  } else if (endpoint) {
    chosen = "otlp";  // an endpoint alone says where to send: the user wants OTLP
  }
  if (chosen == "otlp") {
    e.protocol = protocol;
    if (e.endpoint.empty()) {
      e.endpoint = protocol == "grpc" ? "http://localhost:4317" : "http://localhost:4318/v1/traces";
    }
  } else if (!chosen.empty()) {
    e.protocol = chosen;
  }

  if (auto v = getOtlp(env, "HEADERS")) {
    KeyValues headers;
    for (auto& [k, val] : parseKeyValues(v->first, v->second)) {
      upsert(headers, detail::toLower(k), val);
    }
    e.headers = std::move(headers);
  }
  if (auto v = getOtlp(env, "TIMEOUT")) {
    e.timeout = positiveMs(v->first, v->second);
  }
  if (auto v = getOtlp(env, "COMPRESSION")) {
    std::string c = detail::trim(v->second);
    if (c != "gzip" && c != "none") {
      fail(v->first, v->second, "expected gzip or none");
    }
    e.compression = c == "gzip" ? "gzip" : "";
  }
  if (auto v = getOtlp(env, "CERTIFICATE")) {
    e.tls.ca_file = detail::trim(v->second);  // the CA bundle that verifies the collector
  }

  applySpanLimitsEnv(t.span_limits, env);

  BatchConfig& b = t.batch;
  if (auto v = get(env, "OTEL_BSP_MAX_QUEUE_SIZE")) {
    b.max_queue_size = positiveCount("OTEL_BSP_MAX_QUEUE_SIZE", *v);
  }
  if (auto v = get(env, "OTEL_BSP_MAX_EXPORT_BATCH_SIZE")) {
    b.max_export_batch_size = positiveCount("OTEL_BSP_MAX_EXPORT_BATCH_SIZE", *v);
  }
  if (auto v = get(env, "OTEL_BSP_SCHEDULE_DELAY")) {
    b.schedule_delay = positiveMs("OTEL_BSP_SCHEDULE_DELAY", *v);
  }
  if (auto v = get(env, "OTEL_BSP_EXPORT_TIMEOUT")) {
    b.export_timeout = positiveMs("OTEL_BSP_EXPORT_TIMEOUT", *v);
  }
}

}  // namespace sidetrace::config
