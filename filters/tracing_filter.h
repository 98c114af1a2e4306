#pragma once
// Tracing: extract the caller's context, apply ignore rules, sample, run the SERVER span; one
// CLIENT span per upstream attempt with its context injected upstream. Attributes are written when
// the span ends (nothing is computed for unsampled spans). Never fails a request: a malformed
// context starts a new trace.

#include <array>
#include <memory>
#include <string>
#include <vector>

#include "config/config.h"
#include "filters/filter.h"
#include "filters/process_rule.h"
#include "tracing/propagator.h"
#include "tracing/sampler.h"
#include "tracing/tracer.h"

namespace sidetrace::filters {

// With an egress listener configured (`registry` set), the filter also keeps the in-flight
// registry: an ingress request is in it from its CLIENT span's start to that attempt's end. On
// the egress listener there is no SERVER span: each attempt's CLIENT span gets the parent the
// registry infers (inflight_registry.h), recorded as sidetrace.parent.source.
class TracingFilter : public Filter {
 public:
  // `process_rule`: judge egress parents by the app's sockets too (egress.process). `listeners`:
  // the config's listeners (outliving the filter), whose routes may have a sampler of their own;
  // nullptr: every route samples with the tracer's.
  TracingFilter(const config::TracingConfig& cfg, tracing::Tracer& tracer,
                InflightRegistry* registry = nullptr, bool process_rule = false,
                const std::vector<config::Listener>* listeners = nullptr);

  // Applies the ignore rules and the listener's trust boundary, extracts the caller's context.
  FilterStatus onRequest(Stream& s) override;
  // Starts the SERVER span, once the route (with its own tracing settings) is known.
  void onRouted(Stream& s) override;
  void onUpstreamRequest(Stream& s, RequestHead& upstream_request) override;
  void onUpstreamResult(Stream& s) override;
  // Hands the trace to the caller (tracing.server_timing).
  void onResponse(Stream& s, ResponseHead& head) override;
  void onComplete(Stream& s) override;

 private:
  void inferEgressParent(Stream& s);
  void leaveRegistry(Stream& s);
  const tracing::Sampler* routeSampler(const Stream& s) const;
  // Records the listed headers of `headers` on `span` as <prefix><name> string arrays. Inline:
  // four calls per traced request, and usually no header is listed.
  void recordHeaders(tracing::Span& span, const HeaderMap& headers,
                     const std::vector<std::string>& names, std::string_view prefix) {
    if (!names.empty() && span.recording()) {
      recordListedHeaders(span, headers, names, prefix);
    }
  }
  void recordListedHeaders(tracing::Span& span, const HeaderMap& headers,
                           const std::vector<std::string>& names, std::string_view prefix);
  // http.request.method (and _original), network.protocol.version, http.route and the route's
  // attributes.
  void setCommonRequestAttributes(tracing::Span& span, const Stream& s, bool http2);
  // server.port, client.address, network.peer.address and .port of the SERVER span.
  void setPeerAttributes(tracing::Span& span, const Stream& s);
  // server.address, server.port, network.peer.address and .port of a CLIENT span; returns the
  // endpoint's scheme://host:port (url.full's start), valid until the next call.
  std::string_view setEndpointAttributes(tracing::Span& span, const UpstreamResult& up);
  // grpcMethodPath of a gRPC call's path (nullopt for other requests), remembered for the last
  // path: a traced call asks three times (span name, both spans' rpc.*), and a service's calls
  // repeat a few methods (the check walks the path byte by byte: ~200 instructions a call).
  // `remembered`, if given: whether the path is the one remembered (rpc_block_ describes it).
  std::optional<std::string_view> rpcMethod(const Stream& s, bool* remembered = nullptr);
  // rpc.* for a gRPC call; `code` < 0 when no status was seen (the call broke off).
  void setRpcAttributes(tracing::Span& span, const Stream& s, int code);
  static constexpr size_t kMaxRememberedRpcPath = 256;
  // The SERVER span's name (its CLIENT spans take it from there); `rpc`: rpcMethod(s).
  std::string_view spanName(const Stream& s, std::optional<std::string_view> rpc);
  const std::vector<std::string>& requestHeaders(const Stream& s) const;
  const std::vector<std::string>& responseHeaders(const Stream& s) const;

  const config::TracingConfig& cfg_;
  tracing::Tracer& tracer_;
  InflightRegistry* registry_;
  std::unique_ptr<ProcessRule> process_;  // egress.process (this worker's sockets and caches)
  tracing::CompositePropagator propagator_;
  std::string scratch_;  // url.full and url.query are built here (one worker: no sharing)
  // [listener][route]: the route's own sampler, or null (the tracer's).
  std::vector<std::vector<std::unique_ptr<tracing::Sampler>>> route_samplers_;
  std::vector<std::string_view> header_values_;  // recordHeaders' scratch
  std::string header_key_;
  std::string rpc_path_;  // rpcMethod's last path, and whether it had the method shape
  bool rpc_path_valid_ = false;
  tracing::AttributeBlock rpc_block_;  // rpc.system, .service, .method for rpc_path_
  bool rpc_block_filled_ = false;
  // Attributes every request of a route, connection or endpoint shares, encoded once each (the
  // three set... functions above). Small direct-mapped caches: a collision only encodes again.
  struct RouteBlock {
    const config::Route* route = nullptr;  // this generation's (the filter lives as long)
    size_t version = 0;
    size_t method = 0;
    tracing::AttributeBlock block;
  };
  struct PeerBlock {
    bool filled = false;
    uint16_t peer_port = 0;
    uint16_t local_port = 0;
    std::string peer_address;
    tracing::AttributeBlock block;
  };
  struct EndpointBlock {
    bool filled = false;
    bool tls = false;
    uint16_t port = 0;
    std::string url_origin;  // scheme://host:port
    std::string address;
    std::string host;
    tracing::AttributeBlock block;
  };
  std::array<RouteBlock, 32> route_blocks_;
  struct SpanName {  // "GET orders" for a route and a method (knownMethodIndex), built once
    const config::Route* route = nullptr;
    size_t method = 0;
    std::string name;
  };
  std::array<SpanName, 16> span_names_;
  static constexpr int kPeerBlockBits = 8;
  // By the peer's port: room for a few hundred connections before collisions are common.
  std::array<PeerBlock, size_t{1} << kPeerBlockBits> peer_blocks_;
  std::array<EndpointBlock, 8> endpoint_blocks_;
};

// Removes every trace-context field a caller could send (traceparent, tracestate, b3, x-b3-*,
// baggage): what a `restart` or `ignore` listener must not pass on.
void removeTraceContext(HeaderMap& headers);
// propagator.inject(ctx, headers), the same fields in the same order, without the lookups when
// `headers` holds no trace-context field. `known_absent`: the caller knows it holds none (one
// walk over the fields spared).
void injectContext(const tracing::CompositePropagator& propagator, const tracing::SpanContext& ctx,
                   HeaderMap& headers, bool known_absent = false);

// Shared helpers (exposed for tests).
// True when a tracing.ignore rule matches: the request is proxied untraced, its context passed on.
bool ignoreMatches(const std::vector<config::IgnoreRule>& rules, const RequestHead& req);
bool globMatch(std::string_view pattern, std::string_view text);  // '*' matches any run
std::string redactQuery(std::string_view query);  // "a=1&b&&c=" → "a=REDACTED&REDACTED&&c=REDACTED"
// A URL (e.g. a Referer) with its query redacted as above; without '?' it is returned as is.
std::string redactUrlQuery(std::string_view url);
// Adds `traceparent;desc="00-<trace>-<span>-<flags>"` for ctx to the response's Server-Timing:
// appended to the last Server-Timing field there is (comma-joined, so the upstream's own metrics
// stay), else as a new field.
void appendServerTiming(const tracing::SpanContext& ctx, HeaderMap& headers);
// The methods the HTTP semantic conventions name (RFC 9110's and PATCH); any other is "_OTHER".
bool knownHttpMethod(std::string_view method);

}  // namespace sidetrace::filters
