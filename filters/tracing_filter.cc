#include "filters/tracing_filter.h"

#include <algorithm>
#include <charconv>
#include <optional>
#include <string>
#include <utility>

#include "filters/grpc.h"

namespace sidetrace::filters {

bool globMatch(std::string_view pattern, std::string_view text) {
  // Iterative '*' matcher with single backtrack point; linear in practice.
  size_t p = 0, t = 0, star = std::string_view::npos, mark = 0;
  while (t < text.size()) {
    if (p < pattern.size() && pattern[p] == '*') {
      star = p++;
      mark = t;
    } else if (p < pattern.size() && pattern[p] == text[t]) {
      ++p;
      ++t;
    } else if (star != std::string_view::npos) {
      p = star + 1;
      t = ++mark;
    } else {
      return false;
    }
  }
  while (p < pattern.size() && pattern[p] == '*') {
    ++p;
  }
  return p == pattern.size();
}

namespace {

// redactQuery's work, appended to out.
void appendRedactedQuery(std::string& out, std::string_view query) {
  while (!query.empty()) {
    size_t amp = query.find('&');
    std::string_view item = query.substr(0, amp);
    size_t eq = item.find('=');
    if (eq == std::string_view::npos) {
      // A bare item ("?token") is as likely a secret as a value: keep only that it was there.
      out.append(item.empty() ? "" : "REDACTED");
    } else {
      out.append(item.substr(0, eq + 1));
      out.append("REDACTED");
    }
    if (amp == std::string_view::npos) {
      break;
    }
    out.push_back('&');
    query.remove_prefix(amp + 1);
  }
}

}  // namespace

std::string redactQuery(std::string_view query) {
  std::string out;
  out.reserve(query.size());
  appendRedactedQuery(out, query);
  return out;
}

std::string redactUrlQuery(std::string_view url) {
  size_t q = url.find('?');
  if (q == std::string_view::npos) {
    return std::string(url);
  }
  std::string out(url.substr(0, q + 1));
  appendRedactedQuery(out, url.substr(q + 1));
  return out;
}

namespace {

// The methods knownHttpMethod knows, by knownMethodIndex; kUnknownMethod stands for any other.
constexpr std::string_view kKnownMethods[] = {"GET",   "PUT",    "POST",    "HEAD",   "PATCH",
                                              "TRACE", "DELETE", "OPTIONS", "CONNECT"};
constexpr size_t kUnknownMethod = std::size(kKnownMethods);

size_t knownMethodIndex(std::string_view method) {
  // By length first: a traced request asks several times, and most ask for GET or POST.
  auto either = [method](size_t a, size_t b) {
    return method == kKnownMethods[a] ? a : method == kKnownMethods[b] ? b : kUnknownMethod;
  };
  switch (method.size()) {
    case 3:
      return either(0, 1);
    case 4:
      return either(2, 3);
    case 5:
      return either(4, 5);
    case 6:
      return either(6, 6);
    case 7:
      return either(7, 8);
    default:
      return kUnknownMethod;
  }
}

}  // namespace

bool knownHttpMethod(std::string_view method) {
  return knownMethodIndex(method) != kUnknownMethod;
}

void appendServerTiming(const tracing::SpanContext& ctx, HeaderMap& headers) {
  char buf[tracing::kTraceparentSize];
  const std::string_view tp = tracing::formatTraceparent(ctx, buf);
  Header* last = nullptr;
  for (auto& h : headers) {
    if (iequals(h.name, "server-timing")) {
      last = &h;
    }
  }
  if (last == nullptr) {
    std::string value = "traceparent;desc=\"";
    value += tp;
    value += '"';
    headers.add("server-timing", value);
    return;
  }
  if (!trimOws(last->value).empty()) {
    last->value += ", ";
  }
  last->value += "traceparent;desc=\"";
  last->value += tp;
  last->value += '"';
}

namespace {

// A field some propagator reads: traceparent, tracestate, b3, x-b3-*, baggage. By the first
// letter first: a traced request asks this of every field twice (is a context there to extract,
// and to replace), and most fields start with another letter.
[[gnu::always_inline]] inline bool traceContextField(std::string_view n) {
  if (n.size() < 2) {
    return false;
  }
  switch (n[0] | 0x20) {  // only 'T' and 't' become 't', and so on
    case 't':
      return (n.size() == 11 && iequals(n, "traceparent")) ||
             (n.size() == 10 && iequals(n, "tracestate"));
    case 'b':
      return (n.size() == 2 && n[1] == '3') || (n.size() == 7 && iequals(n, "baggage"));
    case 'x':  // x-b3-traceid, -spanid, -parentspanid, -sampled, -flags (x-request-id is not)
      return n.size() > 5 && n[1] == '-' && (n[2] | 0x20) == 'b' && n[3] == '3' && n[4] == '-';
    default:
      return false;
  }
}

bool anyTraceContextField(const HeaderMap& headers) {
  for (const Header& h : headers) {
    if (traceContextField(h.name)) {
      return true;
    }
  }
  return false;
}

// The propagators' carrier for a head that holds no trace-context field (most requests): a set
// adds and a remove has nothing to remove, unless the field is one this carrier added (several
// propagators may write, or clear, the same field). HeaderMap's set and remove each walk every
// field; inject() with this one walks none (~250 instructions a traced request).
class FreshCarrier final : public tracing::HeaderCarrier {
 public:
  explicit FreshCarrier(HeaderMap& headers) : headers_(headers) {}
  std::optional<std::string_view> get(std::string_view name) const override {
    return headers_.get(name);
  }
  size_t count(std::string_view name) const override { return headers_.count(name); }
  std::optional<std::string_view> getList(std::string_view name,
                                          std::string& scratch) const override {
    return headers_.getList(name, scratch);
  }
  void set(std::string_view name, std::string_view value) override {
    if (added(name)) {
      headers_.set(name, value);
      return;
    }
    if (added_count_ == kMaxAdded) {  // never with the propagators there are; stay exact anyway
      headers_.set(name, value);
      return;
    }
    headers_.add(name, value);
    added_[added_count_++] = name;
  }
  void remove(std::string_view name) override {
    if (added(name)) {
      headers_.remove(name);
    }
  }

 private:
  static constexpr size_t kMaxAdded = 8;
  bool added(std::string_view name) const {
    return std::any_of(added_, added_ + added_count_,
                       [name](std::string_view a) { return iequals(a, name); });
  }
  HeaderMap& headers_;
  std::string_view added_[kMaxAdded];
  size_t added_count_ = 0;
};

}  // namespace

void injectContext(const tracing::CompositePropagator& propagator, const tracing::SpanContext& ctx,
                   HeaderMap& headers, bool known_absent) {
  if (!known_absent && anyTraceContextField(headers)) {
    propagator.inject(ctx, headers);
    return;
  }
  FreshCarrier carrier(headers);
  propagator.inject(ctx, carrier);
}

void removeTraceContext(HeaderMap& headers) {
  headers.eraseIf([](const Header& h) { return traceContextField(h.name); });
}

TracingFilter::TracingFilter(const config::TracingConfig& cfg, tracing::Tracer& tracer,
                             InflightRegistry* registry, bool process_rule,
                             const std::vector<config::Listener>* listeners)
    : cfg_(cfg),
      tracer_(tracer),
      registry_(registry),
      process_(registry != nullptr && process_rule ? std::make_unique<ProcessRule>() : nullptr),
      propagator_(cfg.propagators) {
  if (listeners == nullptr) {
    return;
  }
  for (const auto& l : *listeners) {
    auto& samplers = route_samplers_.emplace_back();
    for (const auto& r : l.routes) {
      samplers.push_back(
          r.tracing && r.tracing->sampler
              ? tracing::makeSampler(r.tracing->sampler->type, r.tracing->sampler->ratio)
              : nullptr);
    }
  }
}

const tracing::Sampler* TracingFilter::routeSampler(const Stream& s) const {
  if (s.route == nullptr || s.listener_index >= route_samplers_.size() ||
      s.route_index >= route_samplers_[s.listener_index].size()) {
    return nullptr;
  }
  return route_samplers_[s.listener_index][s.route_index].get();
}

const std::vector<std::string>& TracingFilter::requestHeaders(const Stream& s) const {
  return s.route != nullptr && s.route->tracing ? s.route->tracing->request_headers
                                                : cfg_.request_headers;
}

const std::vector<std::string>& TracingFilter::responseHeaders(const Stream& s) const {
  return s.route != nullptr && s.route->tracing ? s.route->tracing->response_headers
                                                : cfg_.response_headers;
}

// One attribute per listed header present, with every field line's value in order (the HTTP
// semantic conventions' string array).
void TracingFilter::recordListedHeaders(tracing::Span& span, const HeaderMap& headers,
                                        const std::vector<std::string>& names,
                                        std::string_view prefix) {
  for (const auto& name : names) {
    header_values_.clear();
    for (const auto& h : headers) {
      if (iequals(h.name, name)) {
        header_values_.push_back(h.value);
      }
    }
    if (header_values_.empty()) {
      continue;
    }
    header_key_.assign(prefix);
    header_key_ += name;
    span.setStringArrayAttribute(header_key_, header_values_.data(), header_values_.size());
  }
}

bool ignoreMatches(const std::vector<config::IgnoreRule>& rules, const RequestHead& req) {
  if (rules.empty()) {
    return false;  // most configs: spare finding the path in the target
  }
  std::string_view path = req.path();
  for (const auto& rule : rules) {
    switch (rule.kind) {
      case config::IgnoreRule::Kind::Path:
        if (path == rule.value) {
          return true;
        }
        break;
      case config::IgnoreRule::Kind::Prefix:
        if (path.starts_with(rule.value)) {
          return true;
        }
        break;
      case config::IgnoreRule::Kind::Regex:
        if (rule.regex.matches(path)) {
          return true;
        }
        break;
      case config::IgnoreRule::Kind::Header:
        if (auto v = req.headers.get(rule.header); v && globMatch(rule.value, *v)) {
          return true;
        }
        break;
    }
  }
  return false;
}

// Behind a `restart` or `ignore` listener the caller's context is read at most for the span link
// and then removed, traced or not, so the upstream sees only what sidetrace injects.
FilterStatus TracingFilter::onRequest(Stream& s) {
  const config::TraceContextTrust trust = s.listener->trace_context;
  const bool traced = cfg_.enabled && !ignoreMatches(cfg_.ignore, s.request);
  s.traced = traced;
  if (!traced && trust == config::TraceContextTrust::Trust) {
    return FilterStatus::Continue;  // passed on untouched
  }
  // Many requests carry no context at all: one pass over the fields says so and spares the
  // propagators theirs (each looks its own fields up).
  const bool context_sent = anyTraceContextField(s.request.headers);
  if (traced && trust == config::TraceContextTrust::Trust) {
    if (context_sent) {
      propagator_.sanitize(s.request.headers);
    }
    if (s.listener->egress) {
      inferEgressParent(s);
      return FilterStatus::Continue;
    }
    if (context_sent) {
      s.remote_context = propagator_.extract(s.request.headers);
    }
  } else if (traced && trust == config::TraceContextTrust::Restart && context_sent) {
    s.remote_context = propagator_.extract(s.request.headers);
  }
  if (trust != config::TraceContextTrust::Trust && context_sent) {
    removeTraceContext(s.request.headers);
  }
  s.trace_fields_absent = !context_sent || trust != config::TraceContextTrust::Trust;
  return FilterStatus::Continue;
}

std::optional<std::string_view> TracingFilter::rpcMethod(const Stream& s, bool* remembered) {
  if (remembered != nullptr) {
    *remembered = false;
  }
  if (!s.grpc) {
    return std::nullopt;
  }
  const std::string_view path = s.request.path();
  if (path.size() > kMaxRememberedRpcPath) {
    return grpcMethodPath(path);
  }
  if (path != rpc_path_) {
    rpc_path_.assign(path);
    rpc_path_valid_ = grpcMethodPath(path).has_value();
    rpc_block_filled_ = false;
  }
  if (remembered != nullptr) {
    *remembered = true;
  }
  return rpc_path_valid_ ? std::optional(path.substr(1)) : std::nullopt;  // as grpcMethodPath
}

// "GET orders": method and route name (ARCHITECTURE §6); the method alone without a route; "HTTP"
// in place of a method the conventions do not know (a client must not mint span names). A gRPC
// call is named "package.Service/Method" as the RPC conventions say, when its path has that shape
// (a method, not a resource; anything else keeps the HTTP name).
std::string_view TracingFilter::spanName(const Stream& s, std::optional<std::string_view> rpc) {
  if (rpc) {
    return *rpc;
  }
  const size_t method = knownMethodIndex(s.request.method);
  const std::string_view verb = method != kUnknownMethod ? kKnownMethods[method] : "HTTP";
  if (s.route == nullptr) {
    return verb;
  }
  const size_t key =
      method + reinterpret_cast<uintptr_t>(s.route) / alignof(config::Route) * (kUnknownMethod + 1);
  SpanName& n = span_names_[key % span_names_.size()];
  if (n.route != s.route || n.method != method) {
    n.route = s.route;
    n.method = method;
    n.name.assign(verb);
    n.name += ' ';
    n.name += s.route->name;
  }
  return n.name;
}

// A route with tracing off is proxied as an ignored path is: no span, its context passed on as it
// came. Under `restart` the caller's context is only a link: the sampler decides as for a root.
void TracingFilter::onRouted(Stream& s) {
  if (!s.traced || s.listener->egress) {
    return;
  }
  if (s.route != nullptr && s.route->tracing && !s.route->tracing->enabled) {
    s.traced = false;
    return;
  }
  const bool restart = s.listener->trace_context == config::TraceContextTrust::Restart;
  const tracing::SpanContext* remote = s.remote_context ? &*s.remote_context : nullptr;
  // The route is known, so the span gets its final name now; its CLIENT spans take it from here.
  // It starts when the request arrived (the proxy's reading), not when routing finished.
  s.server_span = tracer_.startServerSpan(spanName(s, rpcMethod(s)), restart ? nullptr : remote,
                                          routeSampler(s), s.start_ns);
  if (restart && remote != nullptr && remote->valid()) {
    s.server_span.addLink(*remote);
  }
  recordHeaders(s.server_span, s.request.headers, requestHeaders(s), "http.request.header.");
}

namespace {

// An HTTP status code as error.type's text ("503").
struct StatusText {
  char buf[8];
  std::string_view text;
  explicit StatusText(int status) {
    auto [end, ec] = std::to_chars(buf, buf + sizeof buf, status);
    text = ec == std::errc() ? std::string_view(buf, static_cast<size_t>(end - buf)) : "";
  }
};

// network.protocol.version's values, by protocolVersion().
constexpr std::string_view kProtocolVersions[] = {"2", "1.0", "1.1"};
size_t protocolVersion(bool http2, int version_minor) {
  return http2 ? 0 : version_minor == 0 ? 1 : 2;
}

// The attributes below are set on a span, or encoded once into an AttributeBlock for many.

template <class Out>
void putMethodAttributes(Out& out, std::string_view method) {
  if (knownHttpMethod(method)) {
    out.setAttribute("http.request.method", method);
  } else {
    out.setAttribute("http.request.method", std::string_view("_OTHER"));
    out.setAttribute("http.request.method_original", method);
  }
}

// After http.request.method: what a route's requests over one protocol version share.
template <class Out>
void putRouteAttributes(Out& out, std::string_view version, const config::Route* route) {
  out.setAttribute("network.protocol.version", version);
  if (route != nullptr) {
    out.setAttribute("http.route", route->name);
    if (route->tracing) {
      for (const auto& [key, value] : route->tracing->attributes) {
        out.setAttribute(key, std::string_view(value));
      }
    }
  }
}

// The SERVER span's: what a downstream connection's requests share.
template <class Out>
void putPeerAttributes(Out& out, const Stream& s) {
  out.setAttribute("server.port", int64_t{s.local_port});
  out.setAttribute("client.address", s.peer_address);
  out.setAttribute("network.peer.address", s.peer_address);
  out.setAttribute("network.peer.port", int64_t{s.peer_port});
}

// The CLIENT span's: what an upstream endpoint's attempts share.
template <class Out>
void putEndpointAttributes(Out& out, const UpstreamResult& up) {
  out.setAttribute("server.address", up.endpoint_host);
  out.setAttribute("server.port", int64_t{up.endpoint_port});
  if (!up.endpoint_address.empty()) {
    out.setAttribute("network.peer.address", up.endpoint_address);
    out.setAttribute("network.peer.port", int64_t{up.endpoint_port});
  }
}

// The CLIENT span's url.full: `origin` (scheme://host:port, urlOrigin) then /path[?redacted
// query], in `scratch`.
std::string_view urlFull(std::string_view origin, const Stream& s, std::string& scratch) {
  const RequestHead::Parts target = s.request.pathAndQuery();
  scratch.clear();
  scratch.reserve(origin.size() + target.path.size() + 1 + target.query.size() + 8);
  scratch.append(origin).append(target.path);
  if (!target.query.empty()) {
    scratch.push_back('?');
    appendRedactedQuery(scratch, target.query);
  }
  return scratch;
}

void urlOrigin(const UpstreamResult& up, std::string& out) {
  char port[8];
  const auto [port_end, ec] = std::to_chars(port, port + sizeof port, up.endpoint_port);
  out.assign(up.tls ? "https://" : "http://");
  out.append(up.endpoint_host).append(1, ':');
  out.append(port, ec == std::errc() ? port_end : port);
}

// rpc.* for a gRPC call, but rpc.grpc.status_code: rpc.system, and rpc.service and rpc.method
// when its path has the method shape (`rpc`: rpcMethod()).
template <class Out>
void putRpcAttributes(Out& out, std::optional<std::string_view> rpc) {
  out.setAttribute("rpc.system", std::string_view("grpc"));
  if (rpc) {
    size_t slash = rpc->find('/');
    out.setAttribute("rpc.service", rpc->substr(0, slash));
    out.setAttribute("rpc.method", rpc->substr(slash + 1));
  }
}

// A CONNECT tunnel's CLIENT span: the destination as the app named it, the address connected
// to, the bytes each way (from the app's side: sent towards the destination, received from it;
// OpenTelemetry has no stable attribute for a tunnel's bytes), and how it ended. The 200 is the
// proxy's answer to CONNECT; no status when the tunnel could not be opened.
void setTunnelAttributes(tracing::Span& span, const Stream& s) {
  const auto& up = s.upstream;
  span.setAttribute("server.address", s.egress_host);
  span.setAttribute("server.port", int64_t{s.egress_port});
  if (!up.endpoint_address.empty()) {
    span.setAttribute("network.peer.address", up.endpoint_address);
    span.setAttribute("network.peer.port", int64_t{up.endpoint_port});
  }
  if (s.route != nullptr) {
    span.setAttribute("sidetrace.cluster", s.route->cluster);
  }
  if (s.response_status != 0) {
    span.setAttribute("http.response.status_code", int64_t{s.response_status});
  }
  span.setAttribute("sidetrace.tunnel.bytes_sent", static_cast<int64_t>(s.request_body_bytes));
  span.setAttribute("sidetrace.tunnel.bytes_received", static_cast<int64_t>(s.response_body_bytes));
  if (up.error != UpstreamResult::Error::None) {
    span.setAttribute("error.type", errorTypeName(up.error));
    span.setStatus(tracing::StatusCode::Error, errorTypeName(up.error));
  }
}

// The app's end of the egress connection `s` arrived on: its address is the peer's, the remote
// end the listener's address, or, for a listener on a wildcard address, the peer's too (the app
// runs beside the sidecar, so its connection's source is the address it connected to).
bool outboundSocket(const Stream& s, TcpEndpoints& out) {
  if (!parseIpLiteral(s.peer_address, out.src, out.v6)) {
    return false;
  }
  bool v6 = false;
  const bool wildcard = s.listener->address.host == "0.0.0.0" || s.listener->address.host == "::";
  if (wildcard || !parseIpLiteral(s.listener->address.host, out.dst, v6) || v6 != out.v6) {
    out.dst = out.src;
  }
  out.sport = s.peer_port;
  out.dport = s.local_port;
  return true;
}

}  // namespace

void TracingFilter::setCommonRequestAttributes(tracing::Span& span, const Stream& s, bool http2) {
  const size_t version = protocolVersion(http2, s.request.version_minor);
  if (s.route == nullptr) {
    putMethodAttributes(span, s.request.method);
    putRouteAttributes(span, kProtocolVersions[version], nullptr);
    return;
  }
  // One block per route, protocol version and method, from the method on; an unknown method's
  // two attributes are set as they come, and the block starts after them.
  const size_t method = knownMethodIndex(s.request.method);
  if (method == kUnknownMethod) {
    putMethodAttributes(span, s.request.method);
  }
  const size_t key = (version * (kUnknownMethod + 1) + method) +
                     reinterpret_cast<uintptr_t>(s.route) / alignof(config::Route) * 31;
  RouteBlock& b = route_blocks_[key % route_blocks_.size()];
  if (b.route != s.route || b.version != version || b.method != method) {
    b.route = s.route;
    b.version = version;
    b.method = method;
    b.block.clear();
    if (method != kUnknownMethod) {
      putMethodAttributes(b.block, kKnownMethods[method]);
    }
    putRouteAttributes(b.block, kProtocolVersions[version], s.route);
  }
  if (span.addAttributes(b.block)) {
    return;
  }
  if (method != kUnknownMethod) {
    putMethodAttributes(span, s.request.method);
  }
  putRouteAttributes(span, kProtocolVersions[version], s.route);
}

void TracingFilter::setPeerAttributes(tracing::Span& span, const Stream& s) {
  // Fibonacci hashing: a client's ports come in runs of even numbers (Linux) or at random.
  const uint32_t slot = (uint32_t{s.peer_port} * 0x9E3779B1u) >> (32 - kPeerBlockBits);
  PeerBlock& b = peer_blocks_[slot];
  if (!b.filled || b.peer_port != s.peer_port || b.local_port != s.local_port ||
      b.peer_address != s.peer_address) {
    b.filled = true;
    b.peer_port = s.peer_port;
    b.local_port = s.local_port;
    b.peer_address.assign(s.peer_address);
    b.block.clear();
    putPeerAttributes(b.block, s);
  }
  if (!span.addAttributes(b.block)) {
    putPeerAttributes(span, s);
  }
}

std::string_view TracingFilter::setEndpointAttributes(tracing::Span& span,
                                                      const UpstreamResult& up) {
  const size_t hash = up.endpoint_port + up.endpoint_address.size() +
                      (up.endpoint_address.empty() ? 0 : uint8_t(up.endpoint_address.back()));
  EndpointBlock& b = endpoint_blocks_[hash % endpoint_blocks_.size()];
  if (!b.filled || b.port != up.endpoint_port || b.tls != up.tls ||
      b.address != up.endpoint_address || b.host != up.endpoint_host) {
    b.filled = true;
    b.port = up.endpoint_port;
    b.tls = up.tls;
    b.address.assign(up.endpoint_address);
    b.host.assign(up.endpoint_host);
    urlOrigin(up, b.url_origin);
    b.block.clear();
    putEndpointAttributes(b.block, up);
  }
  if (!span.addAttributes(b.block)) {
    putEndpointAttributes(span, up);
  }
  return b.url_origin;
}

void TracingFilter::setRpcAttributes(tracing::Span& span, const Stream& s, int code) {
  bool remembered = false;
  const std::optional<std::string_view> rpc = rpcMethod(s, &remembered);
  if (!remembered) {
    putRpcAttributes(span, rpc);
  } else {
    if (!rpc_block_filled_) {
      rpc_block_.clear();
      putRpcAttributes(rpc_block_, rpc);
      rpc_block_filled_ = true;
    }
    if (!span.addAttributes(rpc_block_)) {
      putRpcAttributes(span, rpc);
    }
  }
  if (code >= 0) {
    span.setAttribute("rpc.grpc.status_code", int64_t{code});
  }
}

// The header rule first (the app propagated a context: its call is a child of it), then what the
// registry knows of the inbound requests in flight. A CONNECT tunnel's requests travel inside it
// (TLS): their headers never reach sidetrace, so the header rule does not apply to it; the
// CONNECT request's own x-request-id still may.
void TracingFilter::inferEgressParent(Stream& s) {
  ParentInference& p = s.egress_parent;
  std::optional<tracing::SpanContext> ctx;
  if (!s.tunnel) {
    ctx = propagator_.extract(s.request.headers);
  }
  if (ctx && ctx->valid()) {
    p.source = ParentSource::Header;
    p.parent = std::move(*ctx);
  } else if (registry_ != nullptr) {
    TcpEndpoints outbound;
    const bool judge = process_ != nullptr && outboundSocket(s, outbound);
    p = registry_->infer(s.request.headers.get("x-request-id"), judge ? process_.get() : nullptr,
                         judge ? &outbound : nullptr);
  }
  if (registry_ != nullptr) {
    registry_->countParent(p.source);
  }
}

void TracingFilter::leaveRegistry(Stream& s) {
  if (s.inflight_token != 0) {
    registry_->remove(s.inflight_token);
    s.inflight_token = 0;
  }
}

void TracingFilter::onUpstreamRequest(Stream& s, RequestHead& upstream_request) {
  if (s.listener->egress) {
    if (!s.traced) {
      return;
    }
    const ParentInference& p = s.egress_parent;
    const std::string_view method =
        knownHttpMethod(s.request.method) ? std::string_view(s.request.method) : "HTTP";
    s.client_span = tracer_.startSpan(method, tracing::SpanKind::Client,
                                      p.source != ParentSource::None ? &p.parent : nullptr, nullptr,
                                      s.attempt_start_ns);
    for (size_t i = 0; i < p.link_count; ++i) {
      s.client_span.addLink(p.links[i]);
    }
    s.client_span.setAttribute("sidetrace.parent.source",
                               std::string_view(parentSourceName(p.source)));
    if (!s.tunnel) {  // a tunnel sends no head: nothing to inject into
      injectContext(propagator_, s.client_span.context(), upstream_request.headers);
      recordHeaders(s.client_span, upstream_request.headers, cfg_.request_headers,
                    "http.request.header.");
    }
    return;
  }
  if (s.traced) {
    // Only a recording SERVER span has a recording child: its name is the one wanted.
    s.client_span = tracer_.startChildSpan(s.server_span.name(), tracing::SpanKind::Client,
                                           s.server_span, s.attempt_start_ns);
    injectContext(propagator_, s.client_span.context(), upstream_request.headers,
                  std::exchange(s.trace_fields_absent, false));
    recordHeaders(s.client_span, upstream_request.headers, requestHeaders(s),
                  "http.request.header.");
  }
  if (registry_ != nullptr) {  // ingress, with an egress listener to serve
    leaveRegistry(s);          // a retry's earlier attempt left already; defensive
    auto id = upstream_request.headers.get("x-request-id");
    s.hop_socket.clear();  // the proxy records the connection before the first byte goes out
    s.inflight_token =
        registry_->add(id ? *id : std::string_view(), s.client_span.context(), &s.hop_socket);
  }
}

void TracingFilter::onUpstreamResult(Stream& s) {
  if (registry_ != nullptr) {
    leaveRegistry(s);
  }
  if (!s.traced || !s.client_span.recording()) {
    s.client_span.end();
    return;
  }
  auto& span = s.client_span;
  const auto& up = s.upstream;
  setCommonRequestAttributes(span, s, up.http2);
  if (s.tunnel) {
    setTunnelAttributes(span, s);
    span.end(s.end_ns);
    return;
  }
  if (up.resend_count > 0) {
    span.setAttribute("http.request.resend_count", int64_t{up.resend_count});
  }
  if (s.grpc) {
    setRpcAttributes(span, s, up.grpc_status);
  }
  const std::string_view origin = setEndpointAttributes(span, up);
  span.setAttribute("url.full", urlFull(origin, s, scratch_));
  if (s.route != nullptr) {
    span.setAttribute("sidetrace.cluster", s.route->cluster);
  }
  if (up.error != UpstreamResult::Error::None) {
    span.setAttribute("error.type", errorTypeName(up.error));
    span.setStatus(tracing::StatusCode::Error, errorTypeName(up.error));
  } else {
    span.setAttribute("http.response.status_code", int64_t{up.status});
    if (up.status >= 400) {
      span.setAttribute("error.type", StatusText(up.status).text);
      span.setStatus(tracing::StatusCode::Error);
    } else if (s.grpc && up.grpc_status > 0) {  // a client span errs on any code but OK
      span.setAttribute("error.type", StatusText(up.grpc_status).text);
      span.setStatus(tracing::StatusCode::Error);
    }
  }
  span.end(s.end_ns);
}

// Only a request with a SERVER span has a trace the caller could look up (sampled or not: the
// flags say which); ignored requests and the egress listener answer without one.
void TracingFilter::onResponse(Stream& s, ResponseHead& head) {
  if (!s.traced) {
    return;
  }
  // The CLIENT span is still open when the head it relays is the upstream's (a local reply comes
  // after the attempt ended). Both record the response before Server-Timing is added.
  const auto& names = responseHeaders(s);
  recordHeaders(s.client_span, head.headers, names, "http.response.header.");
  recordHeaders(s.server_span, head.headers, names, "http.response.header.");
  if (cfg_.server_timing && s.server_span.context().valid()) {
    appendServerTiming(s.server_span.context(), head.headers);
  }
}

void TracingFilter::onComplete(Stream& s) {
  if (registry_ != nullptr) {
    leaveRegistry(s);
  }
  if (!s.traced) {
    return;
  }
  if (s.client_span.recording()) {  // attempt abandoned without a result (e.g. client went away)
    s.upstream.error = UpstreamResult::Error::Reset;
    onUpstreamResult(s);
  }
  auto& span = s.server_span;
  if (!span.recording()) {
    span.end();
    return;
  }
  setCommonRequestAttributes(span, s, s.http2);
  if (s.grpc) {
    setRpcAttributes(span, s, s.grpc_status);
  }
  const RequestHead::Parts target = s.request.pathAndQuery();
  span.setAttribute("url.path", target.path);
  if (!target.query.empty()) {
    scratch_.clear();
    appendRedactedQuery(scratch_, target.query);
    span.setAttribute("url.query", scratch_);
  }
  span.setAttribute("url.scheme", s.scheme);
  // Host and User-Agent in one pass over the fields (RequestHead::host() and get() would make two).
  std::optional<std::string_view> host, user_agent;
  for (const auto& h : s.request.headers) {
    const std::string_view name = h.name;
    if (name.size() == 4 && !host && iequals(name, "host")) {
      host = h.value;
    } else if (name.size() == 10 && !user_agent && iequals(name, "user-agent")) {
      user_agent = h.value;
    }
  }
  if (host) {
    if (const std::string_view name = hostWithoutPort(*host); !name.empty()) {
      span.setAttribute("server.address", name);
    }
  }
  setPeerAttributes(span, s);
  if (user_agent) {
    span.setAttribute("user_agent.original", *user_agent);
  }
  if (s.response_status != 0) {
    span.setAttribute("http.response.status_code", int64_t{s.response_status});
  }
  if (s.response_status >= 500 || s.response_status == 0) {
    StatusText status(s.response_status);
    std::string_view type = !s.error_type.empty()    ? std::string_view(s.error_type)
                            : s.response_status != 0 ? status.text
                                                     : "no_response";
    span.setAttribute("error.type", type);
    span.setStatus(tracing::StatusCode::Error);
  } else if (s.grpc && grpcServerError(s.grpc_status)) {
    span.setAttribute("error.type", !s.error_type.empty() ? std::string_view(s.error_type)
                                                          : StatusText(s.grpc_status).text);
    span.setStatus(tracing::StatusCode::Error);
  }
  span.end(s.end_ns);
}

}  // namespace sidetrace::filters
