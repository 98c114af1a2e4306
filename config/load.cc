// Scalar parsers, zero-config flags, cross-field validation and the build pipeline
// (defaults → env → file → flags → validate). Env and YAML each live in their own file.

#include "config/load.h"

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>

#include "config/checks.h"
#include "config/url.h"

namespace sidetrace::config {

namespace {

bool isDigit(char c) {
  return c >= '0' && c <= '9';
}

[[noreturn]] void invalid(const std::string& path, const std::string& msg) {
  throw ConfigError(path + ": " + msg);
}

void requirePositive(Duration d, const std::string& path) {
  if (d.count() <= 0) {
    invalid(path, "must be greater than 0");
  }
}

HostPort flagAddress(const std::string& flag, const std::string& value) {
  try {
    return parseHostPort(value);
  } catch (const ConfigError& e) {
    throw ConfigError(flag + ": " + e.what());
  }
}

}  // namespace

Duration parseDuration(const std::string& text) {
  auto bad = [&]() -> ConfigError {
    return ConfigError("bad duration '" + text +
                       "' (expected e.g. 250ms, 1s, 1.5s, 2m, 1h; a bare number is milliseconds)");
  };
  std::string s = detail::trim(text);
  if (s.empty()) {
    throw bad();
  }
  if (std::all_of(s.begin(), s.end(), isDigit)) {
    if (s.size() > 12) {
      throw bad();
    }
    return Duration(std::stoll(s));
  }
  // One or more number+unit parts, so "1m30s" works as in Go.
  double total_ms = 0;
  size_t i = 0;
  while (i < s.size()) {
    size_t start = i;
    while (i < s.size() && (isDigit(s[i]) || s[i] == '.')) {
      ++i;
    }
    auto number = detail::parseDouble(std::string_view(s).substr(start, i - start));
    size_t unit_start = i;
    while (i < s.size() && std::isalpha(static_cast<unsigned char>(s[i]))) {
      ++i;
    }
    std::string unit = s.substr(unit_start, i - unit_start);
    double scale = unit == "ms"  ? 1
                   : unit == "s" ? 1000
                   : unit == "m" ? 60000
                   : unit == "h" ? 3600000
                                 : 0;
    if (!number || scale == 0) {
      throw bad();
    }
    total_ms += *number * scale;
  }
  if (!(total_ms >= 0) || total_ms > 1e12) {
    throw bad();
  }
  return Duration(std::llround(total_ms));
}

HostPort parseHostPort(const std::string& text) {
  auto bad = [&](const std::string& why) -> ConfigError {
    return ConfigError("bad address '" + text + "': " + why);
  };
  if (text.find("://") != std::string::npos) {
    throw bad("expected host:port, not a URL");
  }
  std::string host;
  std::string port;
  if (!text.empty() && text[0] == '[') {
    size_t close = text.find(']');
    if (close == std::string::npos) {
      throw bad("missing ']' after IPv6 address");
    }
    host = text.substr(1, close - 1);
    if (host.empty()) {
      throw bad("empty IPv6 address");
    }
    if (close + 1 >= text.size() || text[close + 1] != ':') {
      throw bad("missing ':port'");
    }
    port = text.substr(close + 2);
  } else {
    size_t colon = text.rfind(':');
    if (colon == std::string::npos) {
      throw bad("missing ':port' (expected host:port, [v6]:port or :port)");
    }
    host = text.substr(0, colon);
    port = text.substr(colon + 1);
    if (host.find(':') != std::string::npos) {
      throw bad("IPv6 addresses need brackets, e.g. [::1]:8080");
    }
    if (host.empty()) {
      host = "0.0.0.0";
    }
  }
  for (char c : host) {
    if (std::isspace(static_cast<unsigned char>(c)) || c == '/' || c == '[' || c == ']' ||
        c == '@') {
      throw bad("bad host '" + host + "'");
    }
  }
  auto n = detail::parseUint32(port);
  if (!n || *n > 65535) {
    throw bad("port must be a number 0..65535, got '" + port + "'");
  }
  return HostPort{host, static_cast<uint16_t>(*n)};
}

void applyFlags(Config& cfg, const CliOptions& cli) {
  if (cli.listen || cli.upstream) {
    if (cfg.listeners.empty()) {
      if (!cli.listen) {
        throw ConfigError("--upstream: needs --listen when the config has no listeners");
      }
      if (!cli.upstream) {
        throw ConfigError("--listen: needs --upstream when the config has no listeners");
      }
      HostPort up = flagAddress("--upstream", *cli.upstream);
      Listener l;
      l.name = "ingress";
      l.address = flagAddress("--listen", *cli.listen);
      Route r;
      r.name = "default";
      r.cluster = "upstream";
      l.routes.push_back(std::move(r));
      cfg.listeners.push_back(std::move(l));
      bool replaced = false;
      for (auto& c : cfg.clusters) {
        if (c.name == "upstream") {
          c.endpoints = {ClusterEndpoint{up}};
          replaced = true;
        }
      }
      if (!replaced) {
        Cluster c;
        c.name = "upstream";
        c.endpoints = {ClusterEndpoint{up}};
        cfg.clusters.push_back(std::move(c));
      }
    } else {
      if (cli.listen) {
        cfg.listeners[0].address = flagAddress("--listen", *cli.listen);
      }
      if (cli.upstream) {
        if (cfg.clusters.empty()) {
          throw ConfigError("--upstream: the config has listeners but no clusters to point at");
        }
        cfg.clusters[0].endpoints = {ClusterEndpoint{flagAddress("--upstream", *cli.upstream)}};
      }
    }
  }
  if (cli.service_name) {
    cfg.tracing.service_name = *cli.service_name;
  }
  if (cli.otlp_endpoint && *cli.otlp_endpoint == "console") {  // as `sidetrace inject` takes it
    cfg.tracing.exporter.protocol = "console";
    cfg.tracing.exporter.endpoint.clear();
  } else if (cli.otlp_endpoint) {
    try {
      parseGrpcEndpoint(*cli.otlp_endpoint);
    } catch (const ConfigError& e) {
      throw ConfigError(std::string("--otlp-endpoint: ") + e.what() + "; or console");
    }
    cfg.tracing.exporter.protocol = "grpc";
    cfg.tracing.exporter.endpoint = *cli.otlp_endpoint;
  }
  if (cli.admin) {
    if (*cli.admin == "off" || *cli.admin == "none") {
      cfg.admin.enabled = false;
    } else {
      cfg.admin.address = flagAddress("--admin", *cli.admin);
      cfg.admin.enabled = true;
    }
  }
  if (cli.workers) {
    cfg.workers = *cli.workers;
  }
  if (cli.trace_context) {
    for (auto& l : cfg.listeners) {
      l.trace_context = *cli.trace_context;
    }
  }
  for (const auto& p : cli.ignore_paths) {
    IgnoreRule rule;
    rule.kind = IgnoreRule::Kind::Prefix;
    rule.value = p;
    cfg.tracing.ignore.push_back(std::move(rule));
  }
  if (cli.log_level) {
    cfg.log_level = *cli.log_level;
  }
  if (cli.egress) {
    if (!cfg.egress) {
      cfg.egress.emplace();
    }
    cfg.egress->address = flagAddress("--egress", *cli.egress);
  }
  if (cli.log_format) {
    cfg.log_format = *cli.log_format;
  }
}

namespace {

void validateClusters(const Config& cfg) {
  std::set<std::string> cluster_names;
  for (size_t i = 0; i < cfg.clusters.size(); ++i) {
    const Cluster& c = cfg.clusters[i];
    std::string path = "clusters[" + std::to_string(i) + "]";
    if (c.name.empty()) {
      invalid(path + ".name", "missing");
    }
    if (!cluster_names.insert(c.name).second) {
      invalid(path + ".name", "duplicate cluster name '" + c.name + "'");
    }
    if (c.endpoints.empty() && !c.egress) {
      invalid(path + ".endpoints", "needs at least one endpoint");
    }
    for (size_t j = 0; j < c.endpoints.size(); ++j) {
      if (std::string e = detail::checkEndpointWeight(c.endpoints[j].weight); !e.empty()) {
        invalid(path + ".endpoints[" + std::to_string(j) + "].weight", e);
      }
    }
    if (std::string e = detail::checkClusterProtocol(c.protocol); !e.empty()) {
      invalid(path + ".protocol", e);
    }
    if (c.health_check) {
      std::string e = detail::checkHealthCheckType(c.health_check->type);
      if (e.empty()) {
        e = detail::checkHealthCheckProtocol(c.health_check->type, c.protocol);
      }
      if (!e.empty()) {
        invalid(path + ".health_check.type", e);
      }
    }
    if (std::string e = detail::checkLb(c.lb); !e.empty()) {
      invalid(path + ".lb", e);
    }
    requirePositive(c.connect_timeout, path + ".connect_timeout");
  }
}

// Needs the clusters (a route names one), so it runs after validateClusters.
void validateRoute(const Config& cfg, const Route& route, const std::string& rpath) {
  bool has_cluster = !route.cluster.empty();
  if (has_cluster == route.direct_response.has_value()) {
    invalid(rpath, "a route needs exactly one of cluster or direct_response");
  }
  if (has_cluster && cfg.findCluster(route.cluster) == nullptr) {
    invalid(rpath + ".cluster", "unknown cluster '" + route.cluster + "'");
  }
  if (route.direct_response &&
      (route.direct_response->status < 100 || route.direct_response->status > 599)) {
    invalid(rpath + ".direct_response.status", "expected an HTTP status 100..599, got " +
                                                   std::to_string(route.direct_response->status));
  }
  if (std::string e = detail::checkHostPattern(route.match.host); !e.empty()) {
    invalid(rpath + ".match.host", e);
  }
  requirePositive(route.timeout, rpath + ".timeout");
}

void validateListeners(const Config& cfg) {
  std::set<std::string> listener_names;
  for (size_t i = 0; i < cfg.listeners.size(); ++i) {
    const Listener& l = cfg.listeners[i];
    std::string path = "listeners[" + std::to_string(i) + "]";
    if (l.name.empty()) {
      invalid(path + ".name", "missing");
    }
    if (!listener_names.insert(l.name).second) {
      invalid(path + ".name", "duplicate listener name '" + l.name + "'");
    }
    try {
      parseHostPort(l.address.str());
    } catch (const ConfigError& e) {
      invalid(path + ".address", e.what());
    }
    if (l.address.host.empty()) {
      invalid(path + ".address", "missing host");
    }
    if (l.tls && (l.tls->cert.empty() || l.tls->key.empty())) {
      invalid(path + ".tls", "needs both cert and key");
    }
    if (l.tls) {
      for (size_t c = 0; c < l.tls->certificates.size(); ++c) {
        const auto& cert = l.tls->certificates[c];
        if (cert.cert.empty() || cert.key.empty()) {
          invalid(path + ".tls.certificates[" + std::to_string(c) + "]", "needs both cert and key");
        }
      }
    }
    for (size_t r = 0; r < l.routes.size(); ++r) {
      validateRoute(cfg, l.routes[r], path + ".routes[" + std::to_string(r) + "]");
    }
  }
}

void validateExporter(const ExporterConfig& ex) {
  if (std::string e = detail::checkExporterProtocol(ex.protocol); !e.empty()) {
    invalid("tracing.exporter.protocol", e);
  }
  if (ex.protocol == "http/protobuf" || ex.protocol == "http/json") {
    if (ex.endpoint.empty()) {
      invalid("tracing.exporter.endpoint",
              "required with protocol " + ex.protocol +
                  " (e.g. http://localhost:4318/v1/traces; or set OTEL_EXPORTER_OTLP_ENDPOINT)");
    }
    try {
      parseHttpUrl(ex.endpoint);
    } catch (const ConfigError& e) {
      invalid("tracing.exporter.endpoint", e.what());
    }
  }
  if (ex.tls.insecure_skip_verify && ex.protocol == "grpc") {
    invalid("tracing.exporter.tls.insecure_skip_verify",
            "only supported with protocol http/protobuf or http/json");
  }
  if (ex.protocol == "grpc" && ex.endpoint.empty()) {
    invalid("tracing.exporter.endpoint",
            "required with protocol grpc (e.g. http://localhost:4317; or set "
            "OTEL_EXPORTER_OTLP_ENDPOINT or --otlp-endpoint)");
  }
  if (ex.protocol == "grpc") {
    try {
      parseGrpcEndpoint(ex.endpoint);
    } catch (const ConfigError& e) {
      invalid("tracing.exporter.endpoint", e.what());
    }
  }
  if (!ex.compression.empty() && ex.compression != "gzip") {
    invalid("tracing.exporter.compression", "expected gzip or none, got '" + ex.compression + "'");
  }
  requirePositive(ex.timeout, "tracing.exporter.timeout");
}

void validateBatch(const BatchConfig& b) {
  if (b.max_queue_size == 0) {
    invalid("tracing.batch.max_queue_size", "must be greater than 0");
  }
  if (b.max_export_batch_size == 0) {
    invalid("tracing.batch.max_export_batch_size", "must be greater than 0");
  }
  if (b.max_export_batch_size > b.max_queue_size) {
    invalid("tracing.batch.max_export_batch_size",
            "must not exceed max_queue_size (" + std::to_string(b.max_export_batch_size) + " > " +
                std::to_string(b.max_queue_size) + ")");
  }
  requirePositive(b.schedule_delay, "tracing.batch.schedule_delay");
  requirePositive(b.export_timeout, "tracing.batch.export_timeout");
}

void validateTracing(const TracingConfig& t) {
  if (std::string e = detail::checkSamplerType(t.sampler.type); !e.empty()) {
    invalid("tracing.sampler.type", e);
  }
  if (!(t.sampler.ratio >= 0.0 && t.sampler.ratio <= 1.0)) {
    invalid("tracing.sampler.ratio", "must be between 0 and 1");
  }
  for (size_t i = 0; i < t.propagators.size(); ++i) {
    if (std::string e = detail::checkPropagator(t.propagators[i]); !e.empty()) {
      invalid("tracing.propagators[" + std::to_string(i) + "]", e);
    }
  }
  validateExporter(t.exporter);
  validateBatch(t.batch);
}

void validateLimits(const Limits& lim) {
  if (lim.max_request_headers_bytes == 0) {
    invalid("limits.max_request_headers_bytes", "must be greater than 0");
  }
  if (lim.max_request_headers_count == 0) {
    invalid("limits.max_request_headers_count", "must be greater than 0");
  }
  if (lim.buffer_bytes == 0) {
    invalid("limits.buffer_bytes", "must be greater than 0");
  }
  requirePositive(lim.request_header_timeout, "limits.request_header_timeout");
  requirePositive(lim.idle_timeout, "limits.idle_timeout");
  requirePositive(lim.drain_timeout, "limits.drain_timeout");
}

// The egress listener and cluster are made from the egress block (finishEgress): their name is
// reserved, and the listener needs an address like any other.
void validateEgress(const Config& cfg) {
  if (!cfg.egress) {
    return;
  }
  const EgressConfig& e = *cfg.egress;
  for (size_t i = 0; i < cfg.listeners.size(); ++i) {
    if (!cfg.listeners[i].egress && cfg.listeners[i].name == kEgressName) {
      invalid("listeners[" + std::to_string(i) + "].name",
              "'egress' is reserved for the egress listener (egress:)");
    }
  }
  for (size_t i = 0; i < cfg.clusters.size(); ++i) {
    if (!cfg.clusters[i].egress && cfg.clusters[i].name == kEgressName) {
      invalid("clusters[" + std::to_string(i) + "].name",
              "'egress' is reserved for the egress cluster (egress:)");
    }
  }
  if (e.address.host.empty()) {
    invalid("egress.address",
            "needs host:port (e.g. 127.0.0.1:15002), got '" + e.address.str() + "'");
  }
  for (size_t i = 0; i < e.allow.size(); ++i) {
    const std::string key = "egress.allow[" + std::to_string(i) + "]";
    if (e.allow[i].empty()) {
      invalid(key, "must not be empty");
    }
    if (std::string err = detail::checkHostPattern(e.allow[i]); !err.empty()) {
      invalid(key, err);
    }
  }
  requirePositive(e.timeout, "egress.timeout");
  requirePositive(e.connect_timeout, "egress.connect_timeout");
}

void validateLogging(const Config& cfg) {
  if (std::string e = detail::checkLogLevel(cfg.log_level); !e.empty()) {
    invalid("log_level", e);
  }
  if (std::string e = detail::checkLogFormat(cfg.log_format); !e.empty()) {
    invalid("log_format", e);
  }
  if (std::string e = detail::checkAccessLogFormat(cfg.access_log.format); !e.empty()) {
    invalid("access_log.format", e);
  }
}

}  // namespace

// Section by section, in a fixed order, so the first problem reported is always the same one.
void validate(const Config& cfg) {
  if (cfg.listeners.empty() && !cfg.egress) {
    throw ConfigError(
        "listeners: none configured (pass --listen ADDR --upstream HOST:PORT, or --config FILE "
        "with a listeners: section)");
  }
  validateEgress(cfg);
  validateClusters(cfg);
  validateListeners(cfg);
  validateTracing(cfg.tracing);
  validateLimits(cfg.limits);
  validateLogging(cfg);
}

Config buildConfig(const CliOptions& cli, const EnvLookup& env) {
  Config cfg;
  applyEnv(cfg, env);
  if (cli.config_path) {
    const std::string& path = *cli.config_path;
    std::error_code ec;
    if (std::filesystem::is_directory(path, ec)) {
      throw ConfigError("--config: cannot read " + path + ": is a directory");
    }
    std::ifstream in(path, std::ios::binary);
    if (!in) {
      throw ConfigError("--config: cannot read " + path + ": " + std::strerror(errno));
    }
    std::ostringstream text;
    text << in.rdbuf();
    if (in.bad()) {
      throw ConfigError("--config: cannot read " + path + ": read error");
    }
    applyYaml(cfg, text.str(), path, env);
  }
  applyFlags(cfg, cli);
  validate(cfg);
  finishEgress(cfg);
  return cfg;
}

void finishEgress(Config& cfg) {
  if (!cfg.egress) {
    return;
  }
  Listener l;
  l.name = kEgressName;
  l.address = cfg.egress->address;
  l.egress = true;
  Route r;
  r.name = kEgressName;
  r.cluster = kEgressName;
  r.timeout = cfg.egress->timeout;
  l.routes.push_back(std::move(r));
  cfg.listeners.push_back(std::move(l));
  Cluster c;
  c.name = kEgressName;
  c.egress = true;
  c.connect_timeout = cfg.egress->connect_timeout;
  c.dns_refresh_rate = Duration{0};
  // One endpoint per destination: nothing to fail over to, so nothing to eject.
  c.outlier_detection = OutlierDetection{.consecutive_5xx = 0, .consecutive_connect_failures = 0};
  cfg.clusters.push_back(std::move(c));
}

}  // namespace sidetrace::config
