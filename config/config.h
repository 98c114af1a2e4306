#pragma once
// Typed, immutable configuration. Built once (defaults → OTEL_* env → YAML file → CLI flags),
// validated, then shared read-only by every worker as shared_ptr<const Config>. Nothing here does
// I/O on the data path; regexes are compiled here so matching never re-parses them.

#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace sidetrace::config {

using Duration = std::chrono::milliseconds;

struct HostPort {
  std::string host;  // IP literal or DNS name; IPv6 without brackets
  uint16_t port = 0;
  std::string str() const;  // "host:port", IPv6 in brackets
};

}  // namespace sidetrace::config

namespace re2 {
class RE2;
}

namespace sidetrace::config {

// A compiled regex that remembers its source text (for dumps and error messages). RE2, not
// std::regex: matching runs on untrusted paths and headers, and RE2 takes linear time with no
// recursion per character (libstdc++'s std::regex overflows the stack on a 40 KB path and
// backtracks exponentially on `(a+)+`). RE2 syntax: no backreferences or lookaround.
struct Regex {
  std::string source;
  std::shared_ptr<const re2::RE2> re;
  bool matches(std::string_view s) const;  // unanchored search, as std::regex_search
};

struct HeaderMatch {
  std::string name;  // lower-cased at load
  enum class Kind { Present, Exact, Prefix, Regex } kind = Kind::Present;
  std::string value;  // for Exact / Prefix
  Regex regex;        // for Regex
};

struct RouteMatch {
  enum class PathKind { Any, Exact, Prefix, Regex } path_kind = PathKind::Any;
  std::string path;  // for Exact / Prefix
  Regex path_regex;  // for Regex
  std::string host;  // "" any; "*.suffix" suffix match; else exact (case-insensitive, port ignored)
  std::string method;  // "" any; upper-case
  std::vector<HeaderMatch> headers;
};

struct DirectResponse {
  int status = 200;
  std::string body;
};

// When and how often a failed upstream attempt is tried again (Envoy's retry_policy). Retries
// happen only before any response byte went to the client, with the request body in hand.
struct RetryPolicy {
  enum On : uint32_t {
    kConnectFailure = 1u << 0,        // no connection (nothing was sent)
    kReset = 1u << 1,                 // connection reset / closed before a response head
    k5xx = 1u << 2,                   // any 5xx, resets, connect failures, per-try timeouts
    kGatewayError = 1u << 3,          // 502, 503, 504 (and what causes the proxy to answer them)
    kRetriableStatusCodes = 1u << 4,  // the statuses listed in retriable_status_codes
    kGrpcCancelled = 1u << 5,         // gRPC status in the response head (trailers-only)
    kGrpcDeadlineExceeded = 1u << 6,
    kGrpcResourceExhausted = 1u << 7,
    kGrpcUnavailable = 1u << 8,
  };
  uint32_t retry_on = 0;
  uint32_t num_retries = 1;
  Duration per_try_timeout{0};  // 0: none (the route timeout bounds all attempts together)
  std::vector<int> retriable_status_codes;
  Duration base_interval{25};  // back-off before retry n: random in [0, min(max, base * 2^n)]
  Duration max_interval{250};
  bool operator==(const RetryPolicy&) const = default;
};

struct SamplerConfig {
  // always_on | always_off | traceidratio | parentbased_always_on | parentbased_always_off |
  // parentbased_traceidratio
  std::string type = "parentbased_always_on";
  double ratio = 1.0;
  bool operator==(const SamplerConfig&) const = default;
};

// A route's own tracing (`routes[].tracing`), over the tracing section's. Envoy's per-route
// tracing, trimmed: switch it off, sample differently, tag the spans.
struct RouteTracing {
  // false: the route's requests are proxied untraced with their context passed on untouched, as
  // a tracing.ignore rule would (Envoy propagates unchanged at 0% sampling too).
  bool enabled = true;
  std::optional<SamplerConfig> sampler;  // unset: tracing.sampler
  // Added as they are to the SERVER span and every CLIENT span of the route (team, tier...).
  std::vector<std::pair<std::string, std::string>> attributes;
  // After loading: tracing.request_headers / response_headers followed by the route's own, each
  // name once (lower-case), so the data path reads one list.
  std::vector<std::string> request_headers;
  std::vector<std::string> response_headers;
};

struct Route {
  std::string name;  // defaults to the cluster name, or "direct" for direct_response
  RouteMatch match;
  std::string cluster;  // exactly one of cluster / direct_response
  std::optional<DirectResponse> direct_response;
  Duration timeout{15000};  // whole upstream exchange, first byte out to last byte in
  std::optional<RetryPolicy> retry_policy;
  std::optional<RouteTracing> tracing;  // unset: the tracing section's settings
};

inline constexpr uint32_t kUnlimited = UINT32_MAX;

// Active health checking of a cluster's endpoints (Envoy's health_checks, HTTP, gRPC and TCP
// kinds): probes every `interval` from one checker thread; `unhealthy_threshold` failures in a row
// take an endpoint out of rotation, `healthy_threshold` successes bring it back. Endpoints start
// healthy. When none is healthy requests get 503 at once, unless `panic` (use them anyway).
struct HealthCheck {
  std::string type = "http";           // http | tcp | grpc (grpc: http2 clusters only)
  std::string path = "/health";        // http
  std::vector<int> expected_statuses;  // http; empty: any 2xx
  std::string service_name;            // grpc: the HealthCheckRequest.service; "" = whole server
  Duration interval{5000};
  Duration timeout{1000};
  uint32_t healthy_threshold = 2;
  uint32_t unhealthy_threshold = 3;
  bool panic = false;
  bool operator==(const HealthCheck&) const = default;
};

// Passive outlier detection (Envoy's outlier_detection, consecutive_5xx flavour): an endpoint
// whose last `consecutive_5xx` attempts all failed (5xx response, connect failure, reset,
// timeout), or whose last `consecutive_connect_failures` connects were all refused, is ejected
// for base_ejection_time × (times ejected so far), at most max_ejection_time, while at most
// max_ejection_percent of the endpoints (but always one) are out. Shared by the workers
// (upstream/outlier_detector.h). The defaults here are those of an outlier_detection block.
struct OutlierDetection {
  uint32_t consecutive_5xx = 5;               // 0: failures never eject
  uint32_t consecutive_connect_failures = 1;  // 0: refused connects eject only as failures
  Duration base_ejection_time{30000};
  Duration max_ejection_time{300000};
  uint32_t max_ejection_percent = 10;
  bool enabled() const { return consecutive_5xx > 0 || consecutive_connect_failures > 0; }
  bool operator==(const OutlierDetection&) const = default;
};

// A cluster without an outlier_detection block still takes an endpoint that refuses a connection
// out of rotation, for 10 s at first (nginx's max_fails=1 fail_timeout=10s, in spirit): a dead
// endpoint should cost each request a refused connect at most once per ejection, not a third of
// all requests a retry. A refused connect is unambiguous (nothing listens), unlike a 5xx or a
// reset, so this is safe to have on by default; a block without either threshold turns it off.
inline constexpr OutlierDetection kDefaultOutlierDetection{
    .consecutive_5xx = 0, .consecutive_connect_failures = 1, .base_ejection_time = Duration{10000}};

// Per-cluster limits across all workers; unset ones are unlimited (Envoy's circuit_breakers).
struct CircuitBreakerConfig {
  uint32_t max_connections = kUnlimited;
  uint32_t max_pending_requests = kUnlimited;
  uint32_t max_requests = kUnlimited;
  uint32_t max_retries = kUnlimited;
  bool operator==(const CircuitBreakerConfig&) const = default;
};

// Retries in flight may not exceed this share of the cluster's active requests (per worker), so
// retries cannot multiply load on a struggling cluster (Envoy's retry_budget).
struct RetryBudget {
  uint32_t budget_percent = 20;
  uint32_t min_retry_concurrency = 3;  // always allowed, however few requests are active
  bool operator==(const RetryBudget&) const = default;
};

// One server certificate: PEM chain and its PEM private key (paths; read at start, not here).
struct TlsCertificate {
  std::string cert;
  std::string key;
  bool operator==(const TlsCertificate&) const = default;
};

// Downstream TLS for a listener (TLS 1.2+, ALPN http/1.1; h2 comes with HTTP/2). Files are read
// once at start, not here; a reload that changes any of this is refused (restart-only).
struct TlsConfig {
  std::string cert;  // PEM certificate chain path: the default certificate
  std::string key;   // PEM private key path
  // More certificates, chosen by the client's SNI name (matched against SAN/CN); no match or no
  // SNI gets the default one above.
  std::vector<TlsCertificate> certificates;
  std::string client_ca;  // PEM CA bundle: ask for client certificates and verify them (mTLS)
  bool require_client_cert = true;  // with client_ca: refuse clients without a certificate
  bool operator==(const TlsConfig&) const = default;
};

// What a listener makes of the trace context its callers send (`trace_context`), the trust
// boundary OpenTelemetry recommends at public edges.
enum class TraceContextTrust {
  Trust,    // continue the caller's trace, follow its sampled flag (the default)
  Restart,  // always a new trace, sampled as a root; the SERVER span links to the caller's context
  Ignore,   // always a new trace, sampled as a root; the caller's context is disregarded
};

struct Listener {
  std::string name;
  HostPort address;
  std::optional<TlsConfig> tls;  // unset: plain TCP
  std::vector<Route> routes;     // first match wins
  // Restart / Ignore: the caller's trace headers (traceparent, tracestate, b3, x-b3-*, baggage)
  // never reach the upstream, whether the request is traced or not.
  TraceContextTrust trace_context = TraceContextTrust::Trust;
  // The egress listener (made from Config::egress by finishEgress, never written in YAML): it
  // serves forward-proxy requests from the app, and its one route goes to the egress cluster.
  bool egress = false;
};

// TLS towards a cluster's endpoints (TLS 1.2+; ALPN h2 for http2 clusters, http/1.1 otherwise).
// Files are read when a generation is built (at start and on each reload), not here.
struct UpstreamTlsConfig {
  std::string ca_file;  // PEM CA bundle the upstream certificate must chain to; "" = system store
  // Sent as SNI and matched against the certificate. "" = the endpoint's host when it is a DNS
  // name (an IP endpoint sends no SNI and its certificate must name the IP).
  std::string sni;
  std::string cert;  // client certificate chain (PEM), for upstreams that ask for one; with key
  std::string key;   // its PEM private key
  bool insecure_skip_verify = false;  // accept any certificate and name (testing only)
  bool operator==(const UpstreamTlsConfig&) const = default;
};

// One endpoint of a cluster: its address and its share of the load balancer's picks, relative to
// the other endpoints' weights. A HostPort, so code that only needs the address reads it as one.
struct ClusterEndpoint : HostPort {
  uint32_t weight = 1;  // 1..kMaxEndpointWeight
};
inline constexpr uint32_t kMaxEndpointWeight = 1000;

struct Cluster {
  std::string name;
  std::vector<ClusterEndpoint> endpoints;
  std::string protocol = "http1";  // http1 | http2
  std::string lb = "round_robin";  // round_robin | random | least_request (per worker)
  Duration connect_timeout{1000};
  // Per worker per endpoint, kept-alive upstream connections. High enough that a burst of
  // concurrent requests does not close and reopen connections (HAProxy and Envoy keep them all);
  // idle_timeout closes the ones a burst left.
  uint32_t max_idle_connections = 1024;
  Duration idle_timeout{60000};         // an upstream connection unused this long is closed
  Duration max_connection_duration{0};  // 0: none; older connections take no new requests
  // How often endpoints given as DNS names are resolved again (0: only at start and on reload).
  Duration dns_refresh_rate{5000};
  std::optional<UpstreamTlsConfig> tls;  // unset: plain TCP
  RetryBudget retry_budget;
  CircuitBreakerConfig circuit_breakers;
  std::optional<OutlierDetection> outlier_detection;  // unset: kDefaultOutlierDetection
  std::optional<HealthCheck> health_check;            // unset: no active checks
  // The egress cluster (made by finishEgress): no configured endpoints; one is added per
  // destination the app calls, as it is first resolved.
  bool egress = false;
  // What outlier detection the cluster runs: its block, else kDefaultOutlierDetection.
  const OutlierDetection& outlierDetection() const {
    return outlier_detection ? *outlier_detection : kDefaultOutlierDetection;
  }
};

struct IgnoreRule {
  enum class Kind { Path, Prefix, Regex, Header } kind = Kind::Path;
  std::string value;   // path / prefix; for Header: glob on the header value ('*' wildcards)
  Regex regex;         // for Regex
  std::string header;  // for Header: lower-cased header name
};

struct ExporterConfig {
  std::string protocol = "console";  // grpc | http/protobuf | http/json | console | none
  // grpc: http[s]://host:port. http/*: the full traces URL, e.g. http://127.0.0.1:4318/v1/traces
  // (the YAML loader appends /v1/traces to a URL without a path; env follows the OTLP spec).
  std::string endpoint;
  std::vector<std::pair<std::string, std::string>> headers;
  Duration timeout{10000};
  std::string compression;  // "" | gzip ("none" in YAML/env is stored as "")
  // TLS to an https:// collector. Files are read when the exporter starts, not here.
  struct Tls {
    std::string ca_file;                // PEM CA bundle to verify the collector; "" = system store
    bool insecure_skip_verify = false;  // OTLP/HTTP only: accept any certificate (testing only)
    bool operator==(const Tls&) const = default;
  } tls;
  bool operator==(const ExporterConfig&) const = default;  // a reload rebuilds the exporter if !=
};

struct BatchConfig {
  uint32_t max_queue_size = 2048;
  uint32_t max_export_batch_size = 512;
  // Byte bounds (encoded OTLP protobuf). A queue of large spans is capped by bytes as well as by
  // count; an export request is split so that none exceeds max_export_bytes (a collector's gRPC
  // server refuses messages over 4 MiB by default, and a refused request loses every span in it).
  uint32_t max_queue_bytes = 32 * 1024 * 1024;
  uint32_t max_export_bytes = 1024 * 1024;
  Duration schedule_delay{5000};
  Duration export_timeout{30000};
  bool operator==(const BatchConfig&) const = default;
};

// OpenTelemetry span limits (OTEL_SPAN_ATTRIBUTE_*_LIMIT). A string value longer than
// attribute_value_length bytes is cut at a UTF-8 character boundary; attributes past
// attribute_count are dropped and counted in the span's dropped_attributes_count. The value
// default is ours (the spec has none): request data can reach 60 KiB per header.
struct SpanLimits {
  uint32_t attribute_value_length = 4096;
  uint32_t attribute_count = 128;
  bool operator==(const SpanLimits&) const = default;
};

// Header names the header lists refuse unless tracing.allow_sensitive_headers names them.
inline constexpr std::string_view kSensitiveHeaders[] = {"authorization", "cookie", "set-cookie",
                                                         "proxy-authorization"};

struct TracingConfig {
  bool enabled = true;  // false: no spans, no propagation changes (headers pass untouched)
  std::string service_name = "sidetrace";
  std::vector<std::pair<std::string, std::string>> resource;  // extra resource attributes
  // Empty means propagate nothing ("none"); "none" itself is never stored.
  std::vector<std::string> propagators{"tracecontext", "baggage"};
  SamplerConfig sampler;
  std::vector<IgnoreRule> ignore;
  ExporterConfig exporter;
  BatchConfig batch;
  SpanLimits span_limits;
  // Headers recorded as http.request.header.<name> / http.response.header.<name> (string arrays:
  // every value of a repeated field), lower-case. Routes add their own (RouteTracing).
  std::vector<std::string> request_headers;
  std::vector<std::string> response_headers;
  // Of kSensitiveHeaders, the ones the header lists may name anyway (an explicit opt-in: their
  // values are credentials).
  std::vector<std::string> allow_sensitive_headers;
  // Server-Timing: traceparent;desc="00-<trace>-<span>-<flags>" on every response whose request
  // has a SERVER span (the W3C Trace Context Level 3 draft's way to hand the trace to the caller,
  // after traceresponse was dropped). Off by default: it tells any caller the trace id.
  bool server_timing = false;
};

// Per-connection bounds (Beast's body_limit/expires_after habit): each has a default.
struct Limits {
  uint32_t max_request_headers_bytes = 60 * 1024;  // over → 431
  uint32_t max_request_headers_count = 100;        // fields in a head or trailers; over → 431
  Duration request_header_timeout{10000};          // headers not complete in time → 408
  // Keep-alive idle downstream; also an HTTP/2 connection with no stream open, a WebSocket (or
  // other upgraded) tunnel with no byte in either direction, and a local reply the client does not
  // read.
  Duration idle_timeout{60000};
  Duration drain_timeout{15000};  // SIGTERM: wait this long for in-flight
  // Open downstream connections per process (all workers); over it a new connection is closed
  // right after accept and counted. 0: no limit but the open-files limit.
  uint32_t max_connections = 0;
  uint32_t buffer_bytes = 64 * 1024;      // body chunk size per direction
  uint32_t max_concurrent_streams = 100;  // HTTP/2, per downstream connection (SETTINGS)
};

struct AdminConfig {
  HostPort address{"127.0.0.1", 9901};
  bool enabled = true;
  // admin.tracez.max_bytes: memory for the recent sampled spans /tracez shows, split among the
  // workers; 0 turns the view off (and with it the copy of each span). Restart-only.
  uint32_t tracez_max_bytes = 4 * 1024 * 1024;
  static constexpr uint32_t kMaxTracezBytes = 1024u * 1024 * 1024;
};

struct AccessLogConfig {
  std::string path;  // "" off; "stdout"; or a file
  std::string format = "json";
  // Bytes of lines waiting for the log thread (as well as a count bound); beyond it new lines are
  // dropped and counted.
  uint32_t max_queue_bytes = 32 * 1024 * 1024;
};

// The app's outbound HTTP (`egress:` / --egress): a forward proxy on `address` that the app
// reaches through HTTP_PROXY. Each request it carries gets a CLIENT span whose parent is inferred
// from the inbound requests in flight (filters/inflight_registry.h).
struct EgressConfig {
  HostPort address;  // loopback recommended: the app is the only client meant to use it
  // Destination host patterns ("api.example.com", "*.internal"; case-insensitive, any port); empty
  // allows every destination. Others get 403.
  std::vector<std::string> allow;
  Duration timeout{15000};  // per request: DNS, connect, and the whole response
  Duration connect_timeout{1000};
  // The `process` parent rule (filters/process_rule.h): which inbound request the calling
  // process is working on, from its sockets in the kernel. On by default.
  bool process = true;
};

// The names finishEgress gives the egress listener, its route and its cluster (reserved).
inline constexpr std::string_view kEgressName = "egress";

struct Config {
  AdminConfig admin;
  uint32_t workers = 0;  // 0 = one per core
  std::vector<Listener> listeners;
  std::vector<Cluster> clusters;
  std::optional<EgressConfig> egress;  // unset: no egress listener
  TracingConfig tracing;
  Limits limits;
  AccessLogConfig access_log;
  std::string log_level = "info";
  // The proxy's own logs on stderr: json (one object per line, for log pipelines) | text.
  std::string log_format = "json";

  const Cluster* findCluster(std::string_view name) const;
};

using ConfigPtr = std::shared_ptr<const Config>;

}  // namespace sidetrace::config
