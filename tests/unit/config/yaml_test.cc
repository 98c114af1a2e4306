#include <gtest/gtest.h>

#include <string>
#include <utility>
#include <vector>

#include "config/dump.h"
#include "config/load.h"
#include "tests/unit/config/env_map.h"

namespace sidetrace::config {
namespace {

using testing::envFrom;
using testing::errorOf;
using KeyValues = std::vector<std::pair<std::string, std::string>>;

Config load(const std::string& text, std::map<std::string, std::string> env = {}) {
  Config cfg;
  applyYaml(cfg, text, "t.yaml", envFrom(std::move(env)));
  return cfg;
}

std::string loadError(const std::string& text, std::map<std::string, std::string> env = {}) {
  return errorOf([&] { load(text, std::move(env)); });
}

const char* kFull = R"(# every key
admin: { address: "127.0.0.1:9902", enabled: false }
workers: 3
log_level: debug
listeners:
  - name: edge
    address: "[::]:8443"
    tls:
      cert: s.pem
      key: s.key
      certificates: [ { cert: b.pem, key: b.key } ]
      client_ca: ca.pem
      require_client_cert: false
    routes:
      - name: orders-api
        match:
          prefix: /api/orders
          host: "*.Example.com"
          method: post
          headers:
            - { name: X-Canary, exact: "1" }
            - { name: x-p, prefix: "ab" }
            - { name: x-r, regex: "^v[0-9]$" }
            - { name: x-present, present: true }
            - { name: x-bare }
        cluster: orders
        timeout: 15s
      - match: { path: /ping }
        direct_response: { status: 204, body: "pong" }
      - match: { regex: "^/v[12]/" }
        cluster: orders
      - cluster: other
clusters:
  - name: orders
    endpoints: [ "127.0.0.1:8080", "backend:8081" ]
    protocol: http2
    lb: round_robin
    connect_timeout: 250ms
    max_idle_connections: 8
  - name: other
    endpoints: [ "10.0.0.1:80" ]
tracing:
  enabled: false
  service_name: orders
  resource: { deployment.environment: production, replicas: 3 }
  propagators: [ b3multi, baggage ]
  sampler: { type: traceidratio, ratio: 0.1 }
  ignore:
    - { path: /health }
    - { prefix: /ready }
    - { regex: "^/metrics" }
    - { header: User-Agent, value: "kube-probe/*" }
    - { header: x-synthetic }
  exporter:
    protocol: grpc
    endpoint: http://otel-collector:4317
    headers: { X-Api-Token: "${API_TOKEN}" }
    timeout: 3s
    compression: gzip
    tls: { ca_file: /etc/ssl/collector-ca.pem, insecure_skip_verify: false }
  batch: { max_queue_size: 100, max_export_batch_size: 10, schedule_delay: 1s, export_timeout: 2s,
           max_queue_bytes: 5000000, max_export_bytes: 300000 }
  span_limits: { attribute_value_length: 256, attribute_count: 0 }
limits:
  max_request_headers_bytes: 1000
  max_request_headers_count: 50
  request_header_timeout: 1s
  idle_timeout: 2m
  drain_timeout: 3s
  max_pipelined_requests: 5
  buffer_bytes: 4096
  max_concurrent_streams: 7
  max_connections: 9
access_log: { path: stdout, format: text, max_queue_bytes: 70000 }
)";

TEST(ApplyYaml, EveryKey) {
  Config cfg = load(kFull, {{"API_TOKEN", "secret"}});
  EXPECT_EQ(cfg.admin.address.str(), "127.0.0.1:9902");
  EXPECT_FALSE(cfg.admin.enabled);
  EXPECT_EQ(cfg.workers, 3u);
  EXPECT_EQ(cfg.log_level, "debug");

  ASSERT_EQ(cfg.listeners.size(), 1u);
  const Listener& l = cfg.listeners[0];
  EXPECT_EQ(l.name, "edge");
  EXPECT_EQ(l.address.host, "::");
  EXPECT_EQ(l.address.port, 8443);
  ASSERT_TRUE(l.tls);
  EXPECT_EQ(l.tls->cert, "s.pem");
  EXPECT_EQ(l.tls->key, "s.key");
  ASSERT_EQ(l.tls->certificates.size(), 1u);
  EXPECT_EQ(l.tls->certificates[0].cert, "b.pem");
  EXPECT_EQ(l.tls->certificates[0].key, "b.key");
  EXPECT_EQ(l.tls->client_ca, "ca.pem");
  EXPECT_FALSE(l.tls->require_client_cert);
  ASSERT_EQ(l.routes.size(), 4u);

  const Route& r0 = l.routes[0];
  EXPECT_EQ(r0.name, "orders-api");
  EXPECT_EQ(r0.match.path_kind, RouteMatch::PathKind::Prefix);
  EXPECT_EQ(r0.match.path, "/api/orders");
  EXPECT_EQ(r0.match.host, "*.example.com");
  EXPECT_EQ(r0.match.method, "POST");
  ASSERT_EQ(r0.match.headers.size(), 5u);
  EXPECT_EQ(r0.match.headers[0].name, "x-canary");
  EXPECT_EQ(r0.match.headers[0].kind, HeaderMatch::Kind::Exact);
  EXPECT_EQ(r0.match.headers[0].value, "1");
  EXPECT_EQ(r0.match.headers[1].kind, HeaderMatch::Kind::Prefix);
  EXPECT_EQ(r0.match.headers[1].value, "ab");
  EXPECT_EQ(r0.match.headers[2].kind, HeaderMatch::Kind::Regex);
  EXPECT_TRUE(r0.match.headers[2].regex.matches("v7"));
  EXPECT_FALSE(r0.match.headers[2].regex.matches("w7"));
  EXPECT_EQ(r0.match.headers[3].kind, HeaderMatch::Kind::Present);
  EXPECT_EQ(r0.match.headers[4].kind, HeaderMatch::Kind::Present);
  EXPECT_EQ(r0.cluster, "orders");
  EXPECT_EQ(r0.timeout, Duration(15000));

  const Route& r1 = l.routes[1];
  EXPECT_EQ(r1.name, "direct");
  EXPECT_EQ(r1.match.path_kind, RouteMatch::PathKind::Exact);
  EXPECT_EQ(r1.match.path, "/ping");
  ASSERT_TRUE(r1.direct_response);
  EXPECT_EQ(r1.direct_response->status, 204);
  EXPECT_EQ(r1.direct_response->body, "pong");
  EXPECT_EQ(r1.cluster, "");

  const Route& r2 = l.routes[2];
  EXPECT_EQ(r2.name, "orders");
  EXPECT_EQ(r2.match.path_kind, RouteMatch::PathKind::Regex);
  EXPECT_EQ(r2.match.path_regex.source, "^/v[12]/");
  EXPECT_TRUE(r2.match.path_regex.matches("/v2/x"));
  EXPECT_EQ(r2.timeout, Duration(15000));  // default
  EXPECT_EQ(l.routes[3].match.path_kind, RouteMatch::PathKind::Any);
  EXPECT_EQ(l.routes[3].name, "other");

  ASSERT_EQ(cfg.clusters.size(), 2u);
  const Cluster& c = cfg.clusters[0];
  EXPECT_EQ(c.name, "orders");
  ASSERT_EQ(c.endpoints.size(), 2u);
  EXPECT_EQ(c.endpoints[0].str(), "127.0.0.1:8080");
  EXPECT_EQ(c.endpoints[1].str(), "backend:8081");
  EXPECT_EQ(c.protocol, "http2");
  EXPECT_EQ(c.lb, "round_robin");
  EXPECT_EQ(c.connect_timeout, Duration(250));
  EXPECT_EQ(c.max_idle_connections, 8u);
  EXPECT_EQ(cfg.clusters[1].protocol, "http1");  // defaults
  EXPECT_EQ(cfg.clusters[1].connect_timeout, Duration(1000));
  EXPECT_EQ(cfg.clusters[1].max_idle_connections, 1024u);

  const TracingConfig& t = cfg.tracing;
  EXPECT_FALSE(t.enabled);
  EXPECT_EQ(t.service_name, "orders");
  EXPECT_EQ(t.resource, (KeyValues{{"deployment.environment", "production"}, {"replicas", "3"}}));
  EXPECT_EQ(t.propagators, (std::vector<std::string>{"b3multi", "baggage"}));
  EXPECT_EQ(t.sampler.type, "traceidratio");
  EXPECT_DOUBLE_EQ(t.sampler.ratio, 0.1);
  ASSERT_EQ(t.ignore.size(), 5u);
  EXPECT_EQ(t.ignore[0].kind, IgnoreRule::Kind::Path);
  EXPECT_EQ(t.ignore[0].value, "/health");
  EXPECT_EQ(t.ignore[1].kind, IgnoreRule::Kind::Prefix);
  EXPECT_EQ(t.ignore[1].value, "/ready");
  EXPECT_EQ(t.ignore[2].kind, IgnoreRule::Kind::Regex);
  EXPECT_EQ(t.ignore[2].regex.source, "^/metrics");
  EXPECT_EQ(t.ignore[3].kind, IgnoreRule::Kind::Header);
  EXPECT_EQ(t.ignore[3].header, "user-agent");
  EXPECT_EQ(t.ignore[3].value, "kube-probe/*");
  EXPECT_EQ(t.ignore[4].header, "x-synthetic");
  EXPECT_EQ(t.ignore[4].value, "*");
  EXPECT_EQ(t.exporter.protocol, "grpc");
  EXPECT_EQ(t.exporter.endpoint, "http://otel-collector:4317");
  EXPECT_EQ(t.exporter.headers, (KeyValues{{"x-api-token", "secret"}}));
  EXPECT_EQ(t.exporter.timeout, Duration(3000));
  EXPECT_EQ(t.exporter.compression, "gzip");
  EXPECT_EQ(t.exporter.tls.ca_file, "/etc/ssl/collector-ca.pem");
  EXPECT_FALSE(t.exporter.tls.insecure_skip_verify);
  EXPECT_EQ(t.batch.max_queue_size, 100u);
  EXPECT_EQ(t.batch.max_export_batch_size, 10u);
  EXPECT_EQ(t.batch.schedule_delay, Duration(1000));
  EXPECT_EQ(t.batch.export_timeout, Duration(2000));
  EXPECT_EQ(t.batch.max_queue_bytes, 5000000u);
  EXPECT_EQ(t.batch.max_export_bytes, 300000u);
  EXPECT_EQ(t.span_limits.attribute_value_length, 256u);
  EXPECT_EQ(t.span_limits.attribute_count, 0u);

  EXPECT_EQ(cfg.limits.max_request_headers_bytes, 1000u);
  EXPECT_EQ(cfg.limits.max_request_headers_count, 50u);
  EXPECT_EQ(cfg.limits.request_header_timeout, Duration(1000));
  EXPECT_EQ(cfg.limits.idle_timeout, Duration(120000));
  EXPECT_EQ(cfg.limits.drain_timeout, Duration(3000));
  EXPECT_EQ(cfg.limits.buffer_bytes, 4096u);
  EXPECT_EQ(cfg.limits.max_concurrent_streams, 7u);
  EXPECT_EQ(cfg.limits.max_connections, 9u);
  EXPECT_EQ(cfg.access_log.path, "stdout");
  EXPECT_EQ(cfg.access_log.format, "text");
  EXPECT_EQ(cfg.access_log.max_queue_bytes, 70000u);

  EXPECT_EQ(cfg.clusters[0].protocol, "http2");
  EXPECT_NO_THROW(validate(cfg));
}

TEST(ApplyYaml, EmptyFileChangesNothing) {
  Config cfg = load("# nothing\n");
  EXPECT_TRUE(cfg.listeners.empty());
  EXPECT_EQ(cfg.tracing.service_name, "sidetrace");
}

TEST(ApplyYaml, ListsReplaceScalarsOverride) {
  Config cfg;
  cfg.tracing.resource = {{"a", "1"}, {"b", "2"}};
  cfg.tracing.exporter.endpoint = "http://env:4317";
  applyYaml(cfg, "tracing: { propagators: [ none ], resource: { b: 3 }, sampler: { ratio: 0.5 } }",
            "t.yaml", envFrom({}));
  EXPECT_TRUE(cfg.tracing.propagators.empty());
  EXPECT_EQ(cfg.tracing.resource, (KeyValues{{"a", "1"}, {"b", "3"}}));  // maps merge by key
  EXPECT_DOUBLE_EQ(cfg.tracing.sampler.ratio, 0.5);
  EXPECT_EQ(cfg.tracing.sampler.type, "parentbased_always_on");
  EXPECT_EQ(cfg.tracing.exporter.endpoint, "http://env:4317");
}

TEST(ApplyYaml, ResourceServiceName) {
  EXPECT_EQ(load("tracing: { resource: { service.name: r } }").tracing.service_name, "r");
  EXPECT_EQ(
      load("tracing: { service_name: s, resource: { service.name: r } }").tracing.service_name,
      "s");
}

TEST(ApplyYaml, EnvSubstitution) {
  Config cfg = load(
      "tracing:\n"
      "  service_name: ${SVC}\n"
      "  exporter: { endpoint: \"${EP:-http://d:4317}\", protocol: grpc }\n"
      "  resource: { literal: \"$${NOT_A_VAR}\", empty: \"${EMPTY:-fallback}\" }\n"
      "# ${IN_A_COMMENT} is left alone\n",
      {{"SVC", "svc-a"}, {"EMPTY", ""}});
  EXPECT_EQ(cfg.tracing.service_name, "svc-a");
  EXPECT_EQ(cfg.tracing.exporter.endpoint, "http://d:4317");
  EXPECT_EQ(cfg.tracing.resource, (KeyValues{{"literal", "${NOT_A_VAR}"}, {"empty", "fallback"}}));
}

// ---- errors: exact key path and line -------------------------------------------------------

TEST(ApplyYamlErrors, UnknownKey) {
  EXPECT_EQ(loadError("workers: 1\n"
                      "listeners:\n"
                      "  - name: a\n"
                      "    adress: :80\n"),
            "t.yaml:4: listeners[0].adress: unknown key (expected one of: name, address, tls, "
            "routes, trace_context)");
  EXPECT_EQ(loadError("tracing:\n  sampler: { kind: x }\n"),
            "t.yaml:2: tracing.sampler.kind: unknown key (expected one of: type, ratio)");
}

TEST(ApplyYamlErrors, HeaderCountMustBePositive) {
  EXPECT_EQ(loadError("workers: 1\nlimits:\n  max_request_headers_count: 0\n"),
            "t.yaml:3: limits.max_request_headers_count: must be greater than 0");
  EXPECT_EQ(load("workers: 1\n").limits.max_request_headers_count, 100u);  // Envoy's default
}

TEST(ApplyYamlErrors, WrongType) {
  EXPECT_EQ(loadError("workers: many\n"),
            "t.yaml:1: workers: expected a non-negative integer, got 'many'");
  EXPECT_EQ(loadError("tracing:\n  batch: { max_export_bytes: 0 }\n"),
            "t.yaml:2: tracing.batch.max_export_bytes: must be greater than 0");
  EXPECT_EQ(loadError("tracing:\n  span_limits:\n    attribute_value_length: long\n"),
            "t.yaml:3: tracing.span_limits.attribute_value_length: expected a non-negative "
            "integer, got 'long'");
  EXPECT_EQ(loadError("tracing:\n  span_limits: { attribute_size: 1 }\n"),
            "t.yaml:2: tracing.span_limits.attribute_size: unknown key (expected one of: "
            "attribute_value_length, attribute_count)");
  EXPECT_EQ(loadError("\nlisteners: { name: a }\n"),
            "t.yaml:2: listeners: expected a list, got a map");
  EXPECT_EQ(loadError("clusters:\n  - name: [a]\n"),
            "t.yaml:2: clusters[0].name: expected a string, got a list");
  EXPECT_EQ(loadError("tracing: { enabled: maybe }\n"),
            "t.yaml:1: tracing.enabled: expected true or false, got 'maybe'");
  EXPECT_EQ(loadError("workers: 1\ntracing:\n  server_timing: yes please\n"),
            "t.yaml:3: tracing.server_timing: expected true or false, got 'yes please'");
  EXPECT_FALSE(load("workers: 1\n").tracing.server_timing);
  EXPECT_TRUE(load("tracing: { server_timing: true }\n").tracing.server_timing);
}

TEST(ApplyYamlErrors, BadDuration) {
  EXPECT_EQ(loadError("clusters:\n"
                      "  - name: c\n"
                      "    endpoints: [ \"h:1\" ]\n"
                      "listeners:\n"
                      "  - address: :80\n"
                      "    routes:\n"
                      "      - cluster: c\n"
                      "      - cluster: c\n"
                      "        timeout: 10 seconds\n"),
            "t.yaml:9: listeners[0].routes[1].timeout: bad duration '10 seconds' (expected e.g. "
            "250ms, 1s, 1.5s, 2m, 1h; a bare number is milliseconds)");
}

TEST(ApplyYamlErrors, BadRegex) {
  std::string err = loadError(
      "clusters: [ { name: c, endpoints: [ \"h:1\" ] } ]\n"
      "listeners:\n"
      "  - address: :80\n"
      "    routes:\n"
      "      - cluster: c\n"
      "      - cluster: c\n"
      "        match:\n"
      "          regex: \"(\"\n");
  EXPECT_EQ(err.rfind("t.yaml:8: listeners[0].routes[1].match.regex: invalid regex '(': ", 0), 0u)
      << err;
}

TEST(ApplyYamlErrors, UnknownClusterReference) {
  EXPECT_EQ(loadError("listeners:\n"
                      "  - address: :80\n"
                      "    routes:\n"
                      "      - cluster: a\n"
                      "      - direct_response: { status: 200 }\n"
                      "      - cluster: x\n"
                      "clusters: [ { name: a, endpoints: [ \"h:1\" ] } ]\n"),
            "t.yaml:6: listeners[0].routes[2].cluster: unknown cluster 'x'");
}

TEST(ApplyYamlErrors, MissingEnvVar) {
  EXPECT_EQ(loadError("tracing:\n"
                      "  exporter:\n"
                      "    headers: { x-api-token: \"${API_TOKEN}\" }\n"),
            "t.yaml:3: environment variable API_TOKEN is not set (use ${API_TOKEN:-default} to "
            "give a default)");
  EXPECT_EQ(loadError("a: ${oops\n"),
            "t.yaml:1: unterminated '${' (write '$${' for a literal '${')");
  EXPECT_EQ(loadError("a: ${1X}\n"),
            "t.yaml:1: bad variable reference '${1X}' (expected ${NAME} or ${NAME:-default})");
}

TEST(ApplyYamlErrors, ListenerTls) {
  EXPECT_EQ(loadError("listeners:\n"
                      "  - address: 127.0.0.1:1\n"
                      "    tls: { cert: a.pem }\n"),
            "t.yaml:3: listeners[0].tls: needs both cert and key");
  EXPECT_EQ(loadError("listeners:\n"
                      "  - address: 127.0.0.1:1\n"
                      "    tls:\n"
                      "      cert: a.pem\n"
                      "      key: a.key\n"
                      "      certificates: [ { cert: b.pem } ]\n"),
            "t.yaml:6: listeners[0].tls.certificates[0]: needs both cert and key");
  EXPECT_EQ(loadError("listeners:\n"
                      "  - address: 127.0.0.1:1\n"
                      "    tls: { cert: a.pem, key: a.key, ca: x.pem }\n"),
            "t.yaml:3: listeners[0].tls.ca: unknown key (expected one of: cert, key, "
            "certificates, client_ca, require_client_cert)");
  EXPECT_EQ(loadError("listeners:\n"
                      "  - address: 127.0.0.1:1\n"
                      "    tls: { cert: a.pem, key: a.key, require_client_cert: maybe }\n"),
            "t.yaml:3: listeners[0].tls.require_client_cert: expected true or false, got "
            "'maybe'");
}

TEST(ApplyYamlErrors, ExporterTlsAndHttpEndpoint) {
  EXPECT_EQ(loadError("tracing:\n"
                      "  exporter:\n"
                      "    tls: { ca_file: a.pem, verify: false }\n"),
            "t.yaml:3: tracing.exporter.tls.verify: unknown key (expected one of: ca_file, "
            "insecure_skip_verify)");
  EXPECT_EQ(loadError("tracing:\n"
                      "  exporter:\n"
                      "    tls:\n"
                      "      insecure_skip_verify: sometimes\n"),
            "t.yaml:4: tracing.exporter.tls.insecure_skip_verify: expected true or false, got "
            "'sometimes'");
  EXPECT_EQ(loadError("tracing:\n  exporter: { tls: { ca_file: \"\" } }\n"),
            "t.yaml:2: tracing.exporter.tls.ca_file: must not be empty");
  EXPECT_EQ(loadError("tracing:\n  exporter: { tls: pem }\n"),
            "t.yaml:2: tracing.exporter.tls: expected a map, got 'pem'");
  // The URL is checked where it is written, whichever order the keys come in.
  EXPECT_EQ(loadError("tracing:\n"
                      "  exporter:\n"
                      "    endpoint: \"collector:4318\"\n"
                      "    protocol: http/protobuf\n"),
            "t.yaml:3: tracing.exporter.endpoint: bad URL 'collector:4318/v1/traces': expected "
            "http://host:port/path or https://host:port/path");
  EXPECT_EQ(loadError("tracing:\n"
                      "  exporter:\n"
                      "    protocol: http/json\n"
                      "    endpoint: \"http://c:99999/v1/traces\"\n"),
            "t.yaml:4: tracing.exporter.endpoint: bad URL 'http://c:99999/v1/traces': port must "
            "be a number 1..65535, got '99999'");
  // gRPC's endpoint too: a word that is no address fails the config, not every export later.
  EXPECT_EQ(loadError("tracing:\n"
                      "  exporter:\n"
                      "    protocol: grpc\n"
                      "    endpoint: console\n"),
            "t.yaml:4: tracing.exporter.endpoint: bad endpoint 'console': expected "
            "http://host:port, https://host:port, host:port or unix:/path/to/socket");
  EXPECT_EQ(load("tracing: { exporter: { protocol: grpc, endpoint: \"unix:/run/otel.sock\" } }\n")
                .tracing.exporter.endpoint,
            "unix:/run/otel.sock");
  Config ok = load(
      "tracing:\n"
      "  exporter: { protocol: http/json, endpoint: \"https://otlp.example.com\" }\n");
  EXPECT_EQ(ok.tracing.exporter.endpoint, "https://otlp.example.com/v1/traces");
  EXPECT_TRUE(load("tracing: { exporter: { tls: { insecure_skip_verify: true } } }\n")
                  .tracing.exporter.tls.insecure_skip_verify);
}

TEST(ApplyYamlErrors, SyntaxError) {
  std::string err = loadError("workers: 1\nlisteners: [ { name: a }\n");
  EXPECT_EQ(err.rfind("t.yaml:", 0), 0u) << err;
  EXPECT_NE(err.find(": yaml syntax error: "), std::string::npos) << err;
  EXPECT_EQ(loadError("a: 1\n  b: 2\n").rfind("t.yaml:2: yaml syntax error: ", 0), 0u);
}

// limits.max_connections: 0 (the default) is "no limit"; anything but a non-negative integer
// is refused with its key and line. limits.max_pipelined_requests is no longer in the config
// (nothing to bound) but still accepted, and still checked, so existing configs load as before.
TEST(ApplyYamlErrors, ConnectionLimits) {
  EXPECT_EQ(load("limits:\n  max_connections: 0\n").limits.max_connections, 0u);
  EXPECT_EQ(loadError("limits:\n  max_connections: -1\n"),
            "t.yaml:2: limits.max_connections: expected a non-negative integer, got '-1'");
  EXPECT_EQ(loadError("limits:\n  max_connections: lots\n"),
            "t.yaml:2: limits.max_connections: expected a non-negative integer, got 'lots'");
  EXPECT_EQ(loadError("limits:\n  max_pipelined_requests: 0\n"),
            "t.yaml:2: limits.max_pipelined_requests: must be greater than 0");
  EXPECT_EQ(loadError("limits:\n  max_pipelined_requests: 8\n"), "<no error>");
}

TEST(ApplyYamlErrors, ValueChecks) {
  EXPECT_EQ(loadError("tracing: { sampler: { ratio: 2 } }"),
            "t.yaml:1: tracing.sampler.ratio: expected a number between 0 and 1, got '2'");
  EXPECT_EQ(loadError("tracing:\n  propagators: [ tracecontext, jaeger ]\n"),
            "t.yaml:2: tracing.propagators[1]: unknown propagator 'jaeger' (expected one of: "
            "tracecontext, baggage, b3, b3multi, none)");
  EXPECT_EQ(loadError("clusters:\n  - name: c\n    endpoints: [ \"h:1\" ]\n    lb: maglev\n"),
            "t.yaml:4: clusters[0].lb: load balancer 'maglev' is not implemented yet (expected "
            "one of: round_robin, random, least_request)");
  EXPECT_EQ(loadError("listeners:\n  - address: localhost\n"),
            "t.yaml:2: listeners[0].address: bad address 'localhost': missing ':port' (expected "
            "host:port, [v6]:port or :port)");
  EXPECT_EQ(loadError("listeners:\n  - routes: []\n"),
            "t.yaml:2: listeners[0].address: missing (e.g. address: 0.0.0.0:15001)");
  EXPECT_EQ(loadError("clusters: [ { name: c, endpoints: [ \"h:1\" ] } ]\n"
                      "listeners:\n"
                      "  - address: :80\n"
                      "    routes:\n"
                      "      - match: { path: /a, prefix: /b }\n"
                      "        cluster: c\n"),
            "t.yaml:5: listeners[0].routes[0].match.prefix: only one of path, prefix, regex");
  EXPECT_EQ(loadError("listeners:\n"
                      "  - address: :80\n"
                      "    routes:\n"
                      "      - direct_response: { status: 600 }\n"),
            "t.yaml:4: listeners[0].routes[0].direct_response.status: expected an HTTP status "
            "100..599, got '600'");
  EXPECT_EQ(loadError("listeners:\n"
                      "  - address: :80\n"
                      "    routes:\n"
                      "      - name: x\n"),
            "t.yaml:4: listeners[0].routes[0]: a route needs cluster or direct_response");
  EXPECT_EQ(loadError("tracing:\n  ignore:\n    - { path: /a, value: b }\n"),
            "t.yaml:3: tracing.ignore[0].value: only valid together with header");
  EXPECT_EQ(loadError("workers: 1\nworkers: 2\n"), "t.yaml:2: workers: duplicate key");
  EXPECT_EQ(loadError("- a\n"),
            "t.yaml:1: expected a map of settings at the top level, got a list");
}

}  // namespace
}  // namespace sidetrace::config

namespace sidetrace::config {
namespace {

constexpr const char* kRetryYaml = R"(clusters:
  - name: c
    endpoints: [ "h:1" ]
    retry_budget: { budget_percent: 50, min_retry_concurrency: 1 }
listeners:
  - address: :80
    routes:
      - cluster: c
        retry_policy:
          retry_on: [ connect-failure, 5xx, retriable-status-codes, unavailable ]
          num_retries: 3
          per_try_timeout: 250ms
          retriable_status_codes: [ 409 ]
          back_off: { base_interval: 10ms, max_interval: 1s }
      - match: { prefix: /b }
        cluster: c
)";

TEST(ApplyYamlRetry, PolicyAndBudget) {
  Config cfg = load(kRetryYaml);
  ASSERT_EQ(cfg.listeners[0].routes.size(), 2u);
  const auto& p = cfg.listeners[0].routes[0].retry_policy;
  ASSERT_TRUE(p);
  EXPECT_EQ(p->retry_on, RetryPolicy::kConnectFailure | RetryPolicy::k5xx |
                             RetryPolicy::kRetriableStatusCodes | RetryPolicy::kGrpcUnavailable);
  EXPECT_EQ(p->num_retries, 3u);
  EXPECT_EQ(p->per_try_timeout, Duration(250));
  EXPECT_EQ(p->retriable_status_codes, std::vector<int>{409});
  EXPECT_EQ(p->base_interval, Duration(10));
  EXPECT_EQ(p->max_interval, Duration(1000));
  EXPECT_FALSE(cfg.listeners[0].routes[1].retry_policy) << "no policy: no retries";
  EXPECT_EQ(cfg.clusters[0].retry_budget.budget_percent, 50u);
  EXPECT_EQ(cfg.clusters[0].retry_budget.min_retry_concurrency, 1u);
  EXPECT_EQ(RetryBudget{}.budget_percent, 20u);
  EXPECT_EQ(RetryBudget{}.min_retry_concurrency, 3u);
}

TEST(ApplyYamlRetry, Errors) {
  const std::string head =
      "clusters: [ { name: c, endpoints: [ \"h:1\" ] } ]\nlisteners:\n  - address: :80\n"
      "    routes:\n      - cluster: c\n";
  EXPECT_EQ(loadError(head + "        retry_policy: { retry_on: [ 5xx, sometimes ] }\n"),
            "t.yaml:6: listeners[0].routes[0].retry_policy.retry_on[1]: unknown retry condition "
            "'sometimes' (expected one of: connect-failure, reset, 5xx, gateway-error, "
            "retriable-status-codes, cancelled, deadline-exceeded, resource-exhausted, "
            "unavailable)");
  EXPECT_EQ(loadError(head + "        retry_policy: { num_retries: 2 }\n"),
            "t.yaml:6: listeners[0].routes[0].retry_policy.retry_on: missing (e.g. retry_on: [ "
            "connect-failure, gateway-error ])");
  EXPECT_EQ(loadError(head + "        retry_policy: { retry_on: [ 5xx ], num_retries: 11 }\n"),
            "t.yaml:6: listeners[0].routes[0].retry_policy.num_retries: at most 10 retries");
  EXPECT_EQ(loadError(head + "        retry_policy: { retry_on: [ 5xx ], back_off: { "
                             "base_interval: 2s, max_interval: 1s } }\n"),
            "t.yaml:6: listeners[0].routes[0].retry_policy.back_off.max_interval: must not be "
            "less than base_interval");
  EXPECT_EQ(loadError("clusters:\n  - name: c\n    endpoints: [ \"h:1\" ]\n"
                      "    retry_budget: { budget_percent: 101 }\n"),
            "t.yaml:4: clusters[0].retry_budget.budget_percent: expected a percentage 0..100");
}

}  // namespace
}  // namespace sidetrace::config

namespace sidetrace::config {
namespace {

TEST(ApplyYamlCircuitBreakers, LimitsAndDump) {
  Config cfg = load(
      "clusters:\n  - name: c\n    endpoints: [ \"h:1\" ]\n"
      "    circuit_breakers: { max_connections: 10, max_requests: 100, max_retries: 0 }\n");
  const auto& b = cfg.clusters[0].circuit_breakers;
  EXPECT_EQ(b.max_connections, 10u);
  EXPECT_EQ(b.max_pending_requests, kUnlimited);
  EXPECT_EQ(b.max_requests, 100u);
  EXPECT_EQ(b.max_retries, 0u);
  EXPECT_NE(dumpConfigJson(cfg).find(R"("circuit_breakers": {
        "max_connections": 10,
        "max_requests": 100,
        "max_retries": 0
      })"),
            std::string::npos)
      << dumpConfigJson(cfg);
  EXPECT_EQ(loadError("clusters:\n  - name: c\n    endpoints: [ \"h:1\" ]\n"
                      "    circuit_breakers: { max_streams: 1 }\n"),
            "t.yaml:4: clusters[0].circuit_breakers.max_streams: unknown key (expected one of: "
            "max_connections, max_pending_requests, max_requests, max_retries)");
}

}  // namespace
}  // namespace sidetrace::config

namespace sidetrace::config {
namespace {

TEST(ApplyYamlOutlierDetection, KeysDefaultsAndErrors) {
  Config cfg = load(
      "clusters:\n  - name: c\n    endpoints: [ \"h:1\" ]\n"
      "    outlier_detection: { consecutive_5xx: 3, base_ejection_time: 10s }\n");
  ASSERT_TRUE(cfg.clusters[0].outlier_detection);
  const auto& o = *cfg.clusters[0].outlier_detection;
  EXPECT_EQ(o.consecutive_5xx, 3u);
  EXPECT_EQ(o.consecutive_connect_failures, 1u);
  EXPECT_EQ(o.base_ejection_time, Duration(10000));
  EXPECT_EQ(o.max_ejection_time, Duration(300000));
  EXPECT_EQ(o.max_ejection_percent, 10u);
  EXPECT_NE(dumpConfigJson(cfg).find(R"("outlier_detection": {
        "consecutive_5xx": 3,
        "consecutive_connect_failures": 1,
        "base_ejection_time": "10s",
        "max_ejection_time": "5m",
        "max_ejection_percent": 10
      })"),
            std::string::npos)
      << dumpConfigJson(cfg);
  // Without a block: refused connects only, for 10 s at first; the dump shows it.
  Config none = load("clusters:\n  - name: c\n    endpoints: [ \"h:1\" ]\n");
  EXPECT_FALSE(none.clusters[0].outlier_detection);
  EXPECT_EQ(none.clusters[0].outlierDetection(), kDefaultOutlierDetection);
  EXPECT_NE(dumpConfigJson(none).find(R"("outlier_detection": {
        "consecutive_5xx": 0,
        "consecutive_connect_failures": 1,
        "base_ejection_time": "10s",
        "max_ejection_time": "5m",
        "max_ejection_percent": 10
      })"),
            std::string::npos)
      << dumpConfigJson(none);
  // Off: both thresholds 0.
  Config off = load(
      "clusters:\n  - name: c\n    endpoints: [ \"h:1\" ]\n"
      "    outlier_detection: { consecutive_5xx: 0, consecutive_connect_failures: 0 }\n");
  EXPECT_FALSE(off.clusters[0].outlierDetection().enabled());
  EXPECT_EQ(loadError("clusters:\n  - name: c\n    endpoints: [ \"h:1\" ]\n"
                      "    outlier_detection: { max_ejection_percent: 150 }\n"),
            "t.yaml:4: clusters[0].outlier_detection.max_ejection_percent: expected a percentage "
            "0..100");
  EXPECT_EQ(loadError("clusters:\n  - name: c\n    endpoints: [ \"h:1\" ]\n"
                      "    outlier_detection: { base_ejection_time: 10m }\n"),
            "t.yaml:4: clusters[0].outlier_detection.max_ejection_time: must not be less than "
            "base_ejection_time");
}

}  // namespace
}  // namespace sidetrace::config

namespace sidetrace::config {
namespace {

TEST(ApplyYamlHealthCheck, KeysDefaultsAndErrors) {
  Config cfg = load(
      "clusters:\n  - name: c\n    endpoints: [ \"h:1\" ]\n"
      "    health_check: { path: /ready, expected_statuses: [ 200, 204 ], interval: 2s, "
      "panic: true }\n");
  ASSERT_TRUE(cfg.clusters[0].health_check);
  const auto& h = *cfg.clusters[0].health_check;
  EXPECT_EQ(h.type, "http");
  EXPECT_EQ(h.path, "/ready");
  EXPECT_EQ(h.expected_statuses, (std::vector<int>{200, 204}));
  EXPECT_EQ(h.interval, Duration(2000));
  EXPECT_EQ(h.timeout, Duration(1000));
  EXPECT_EQ(h.healthy_threshold, 2u);
  EXPECT_EQ(h.unhealthy_threshold, 3u);
  EXPECT_TRUE(h.panic);
  EXPECT_NE(dumpConfigJson(cfg).find("\"health_check\": {"), std::string::npos);
  const std::string head = "clusters:\n  - name: c\n    endpoints: [ \"h:1\" ]\n";
  EXPECT_EQ(loadError(head + "    health_check: { type: udp }\n"),
            "t.yaml:4: clusters[0].health_check.type: unknown health check type 'udp' (expected "
            "one of: http, tcp, grpc)");
  EXPECT_EQ(loadError(head + "    health_check: { path: health }\n"),
            "t.yaml:4: clusters[0].health_check.path: must start with '/'");
  // HTTP checks on a TLS cluster run over the cluster's TLS (health_probe.h).
  Config tls = load(head +
                    "    tls: {}\n    health_check: { type: http }\n"
                    "listeners:\n  - address: :80\n    routes: [ { cluster: c } ]\n");
  EXPECT_NO_THROW(validate(tls));
  tls.clusters[0].health_check->type = "tcp";
  EXPECT_NO_THROW(validate(tls));
}

// Issue 17's trace controls: the trust boundary, per-route tracing and header attributes.
const char* kTraceControls = R"(listeners:
  - name: edge
    address: 0.0.0.0:8000
    trace_context: restart
    routes:
      - name: checkout
        match: { prefix: /checkout }
        cluster: app
        tracing:
          sampler: { type: traceidratio, ratio: 0.5 }
          attributes: { team: payments, tier: "1" }
          request_headers: [ X-Tenant, x-request-id ]
          response_headers: [ x-cache ]
      - name: health
        match: { path: /health }
        cluster: app
        tracing: { enabled: false }
      - cluster: app
  - name: internal
    address: 127.0.0.1:8001
    routes: [ { cluster: app } ]
clusters:
  - { name: app, endpoints: [ "127.0.0.1:8080" ] }
tracing:
  request_headers: [ x-request-id, Authorization ]
  response_headers: [ content-type ]
  allow_sensitive_headers: [ authorization ]
)";

TEST(ApplyYamlTraceControls, KeysAndMergedHeaderLists) {
  Config cfg = load(kTraceControls);
  ASSERT_EQ(cfg.listeners.size(), 2u);
  EXPECT_EQ(cfg.listeners[0].trace_context, TraceContextTrust::Restart);
  EXPECT_EQ(cfg.listeners[1].trace_context, TraceContextTrust::Trust);
  const auto& routes = cfg.listeners[0].routes;
  ASSERT_TRUE(routes[0].tracing);
  const RouteTracing& rt = *routes[0].tracing;
  EXPECT_TRUE(rt.enabled);
  ASSERT_TRUE(rt.sampler);
  EXPECT_EQ(rt.sampler->type, "traceidratio");
  EXPECT_DOUBLE_EQ(rt.sampler->ratio, 0.5);
  EXPECT_EQ(rt.attributes, (KeyValues{{"team", "payments"}, {"tier", "1"}}));
  // The tracing section's names first, then the route's it does not have; lower-case.
  EXPECT_EQ(rt.request_headers,
            (std::vector<std::string>{"x-request-id", "authorization", "x-tenant"}));
  EXPECT_EQ(rt.response_headers, (std::vector<std::string>{"content-type", "x-cache"}));
  ASSERT_TRUE(routes[1].tracing);
  EXPECT_FALSE(routes[1].tracing->enabled);
  EXPECT_FALSE(routes[1].tracing->sampler);
  EXPECT_FALSE(routes[2].tracing);
  EXPECT_EQ(cfg.tracing.allow_sensitive_headers, (std::vector<std::string>{"authorization"}));

  const std::string dump = dumpConfigJson(cfg);
  EXPECT_NE(dump.find("\"trace_context\": \"restart\""), std::string::npos) << dump;
  EXPECT_NE(dump.find("\"team\": \"payments\""), std::string::npos) << dump;
  // A route without its own sampler shows the one in effect.
  EXPECT_NE(dump.find(R"("enabled": false,
            "sampler": {
              "type": "parentbased_always_on",)"),
            std::string::npos)
      << dump;
}

TEST(ApplyYamlTraceControls, ErrorsNameKeyAndLine) {
  EXPECT_EQ(loadError("listeners:\n  - address: :80\n    trace_context: distrust\n"),
            "t.yaml:3: listeners[0].trace_context: expected trust, restart or ignore, got "
            "'distrust'");
  // Credentials need the explicit override, wherever they are listed (the tracing section may
  // come after the routes).
  EXPECT_EQ(loadError("tracing:\n  request_headers:\n    - x-a\n    - Cookie\n"),
            "t.yaml:4: tracing.request_headers[1]: 'cookie' carries credentials: its values "
            "would be exported in spans (name it in tracing.allow_sensitive_headers as well to "
            "record it anyway)");
  EXPECT_EQ(loadError("clusters: [ { name: app, endpoints: [ \"127.0.0.1:1\" ] } ]\n"
                      "listeners:\n"
                      "  - address: :80\n"
                      "    routes:\n"
                      "      - cluster: app\n"
                      "        tracing:\n"
                      "          response_headers: [ set-cookie ]\n"
                      "tracing: { allow_sensitive_headers: [ cookie ] }\n"),
            "t.yaml:7: listeners[0].routes[0].tracing.response_headers[0]: 'set-cookie' carries "
            "credentials: its values would be exported in spans (name it in "
            "tracing.allow_sensitive_headers as well to record it anyway)");
  EXPECT_EQ(loadError("tracing:\n  response_headers: [ proxy-authorization ]\n"),
            "t.yaml:2: tracing.response_headers[0]: 'proxy-authorization' carries credentials: "
            "its values would be exported in spans (name it in tracing.allow_sensitive_headers "
            "as well to record it anyway)");
  EXPECT_EQ(loadError("tracing:\n  allow_sensitive_headers: [ x-api-key ]\n"),
            "t.yaml:2: tracing.allow_sensitive_headers[0]: 'x-api-key' is not a sensitive header "
            "(only authorization, cookie, set-cookie and proxy-authorization need allowing)");
  EXPECT_EQ(loadError("tracing:\n  request_headers: [ \"x a\" ]\n"),
            "t.yaml:2: tracing.request_headers[0]: not a header name: 'x a'");
  EXPECT_EQ(loadError("tracing:\n  request_headers: [ x-a, X-A ]\n"),
            "t.yaml:2: tracing.request_headers[1]: duplicate header 'x-a'");
  const std::string route =
      "clusters: [ { name: app, endpoints: [ \"127.0.0.1:1\" ] } ]\n"
      "listeners:\n"
      "  - address: :80\n"
      "    routes:\n"
      "      - cluster: app\n"
      "        tracing:\n";
  EXPECT_EQ(loadError(route + "          sampler: { ratio: 0.5 }\n"),
            "t.yaml:7: listeners[0].routes[0].tracing.sampler.type: missing (e.g. sampler: { "
            "type: traceidratio, ratio: 0.5 })");
  EXPECT_EQ(loadError(route + "          sampler: { type: sometimes }\n"),
            "t.yaml:7: listeners[0].routes[0].tracing.sampler.type: unknown sampler 'sometimes' "
            "(expected one of: always_on, always_off, traceidratio, parentbased_always_on, "
            "parentbased_always_off, parentbased_traceidratio)");
  EXPECT_EQ(loadError(route + "          enabled: nope\n"),
            "t.yaml:7: listeners[0].routes[0].tracing.enabled: expected true or false, got 'nope'");
  EXPECT_EQ(loadError(route + "          attributes:\n            http.route: mine\n"),
            "t.yaml:8: listeners[0].routes[0].tracing.attributes.http.route: 'http.route' is in "
            "a namespace sidetrace sets itself (reserved: http., url., server., client., "
            "network., user_agent., error., rpc., sidetrace.)");
  EXPECT_EQ(loadError(route + "          tags: { a: b }\n"),
            "t.yaml:7: listeners[0].routes[0].tracing.tags: unknown key (expected one of: "
            "enabled, sampler, attributes, request_headers, response_headers)");
}

TEST(ApplyYamlHealthCheck, GrpcNeedsAnHttp2Cluster) {
  const std::string routes = "listeners:\n  - address: :80\n    routes: [ { cluster: c } ]\n";
  Config cfg = load(
      "clusters:\n  - name: c\n    endpoints: [ \"h:1\" ]\n    protocol: http2\n"
      "    health_check: { type: grpc, service_name: pkg.Orders, interval: 1s }\n" +
      routes);
  ASSERT_TRUE(cfg.clusters[0].health_check);
  const auto& h = *cfg.clusters[0].health_check;
  EXPECT_EQ(h.type, "grpc");
  EXPECT_EQ(h.service_name, "pkg.Orders");
  EXPECT_EQ(h.interval, Duration(1000));
  EXPECT_NO_THROW(validate(cfg));
  EXPECT_NE(dumpConfigJson(cfg).find(R"("type": "grpc",)"), std::string::npos)
      << dumpConfigJson(cfg);
  EXPECT_NE(dumpConfigJson(cfg).find(R"("service_name": "pkg.Orders",)"), std::string::npos)
      << dumpConfigJson(cfg);
  // The default: the server's overall health.
  Config overall = load(
      "clusters:\n  - name: c\n    endpoints: [ \"h:1\" ]\n    protocol: http2\n"
      "    tls: {}\n    health_check: { type: grpc }\n" +
      routes);
  EXPECT_EQ(overall.clusters[0].health_check->service_name, "");
  EXPECT_NO_THROW(validate(overall)) << "gRPC checks over TLS";
  EXPECT_NE(dumpConfigJson(overall).find(R"("service_name": "",)"), std::string::npos);

  // Refused on http1 clusters, naming the key and the line, whichever order the keys come in.
  EXPECT_EQ(loadError("clusters:\n  - name: c\n    endpoints: [ \"h:1\" ]\n"
                      "    health_check:\n      interval: 1s\n      type: grpc\n"),
            "t.yaml:6: clusters[0].health_check.type: grpc health checks need the cluster's "
            "protocol: http2 (gRPC runs over HTTP/2), not http1");
  EXPECT_EQ(loadError("clusters:\n  - name: c\n    endpoints: [ \"h:1\" ]\n"
                      "    health_check: { type: grpc }\n    protocol: http1\n"),
            "t.yaml:4: clusters[0].health_check.type: grpc health checks need the cluster's "
            "protocol: http2 (gRPC runs over HTTP/2), not http1");
  // validate() holds the same rule for configs built without YAML.
  cfg.clusters[0].protocol = "http1";
  EXPECT_EQ(errorOf([&] { validate(cfg); }),
            "clusters[0].health_check.type: grpc health checks need the cluster's protocol: http2 "
            "(gRPC runs over HTTP/2), not http1");
}

}  // namespace
}  // namespace sidetrace::config
