#pragma once
// Egress: the first filter on the egress listener, where the app's outbound HTTP arrives as
// forward-proxy requests (clients honouring HTTP_PROXY send `GET http://host:port/path`). It
// takes the destination from the absolute-form target, applies egress.allow, and leaves an
// ordinary origin-form request whose Host names the destination (RFC 9112 §3.2.2), so the rest
// of the chain and the exchange treat it like any other. Ingress listeners pass untouched.
//
// `CONNECT host:port` (clients honouring HTTPS_PROXY) names a destination the same way and marks
// the stream a tunnel (Stream::tunnel): the exchange connects, answers 200 and carries bytes both
// ways. Its target stays as sent (the access log's path).
//
// Over HTTP/2 (h2c by prior knowledge) a request names its destination in :authority, and is
// forwarded over HTTP/2 as well.
//
// A connection iptables redirected to the listener (transparent mode) is handed to
// handleRedirected (transparent_egress.h) instead: its requests are origin-form by nature.
//   not absolute-form (origin-form, a bare authority) → 400; HTTP/2 without a valid :authority →
//   400;  https:// → 400 (needs CONNECT); CONNECT without host:port (no port, port 0, userinfo, a
//   path, a scheme) → 400; CONNECT over HTTP/2 → 501 (RFC 9113 §8.5 tunnels over a stream are not
//   implemented); a destination egress.allow does not list → 403 (counted).

#include <optional>
#include <string_view>

#include "config/config.h"
#include "filters/filter.h"
#include "filters/inflight_registry.h"

namespace sidetrace::filters {

// An absolute-form `http://` target, split (views into the target).
struct AbsoluteTarget {
  std::string_view host;       // without brackets for IPv6
  uint16_t port = 80;          // 80 when absent
  std::string_view authority;  // as written: host[:port]
  std::string_view rest;       // path and query ("" when the URL has neither)
};
// nullopt unless `target` is `http://authority[/path][?query]` with a host, an optional port in
// 1..65535, and no userinfo. The scheme is matched case-insensitively. A host is a name (letters,
// digits, '-', '.', '_'), an IPv4 address, or an IPv6 address in brackets.
std::optional<AbsoluteTarget> parseAbsoluteTarget(std::string_view target);

// A CONNECT request's authority-form target (RFC 9110 §9.3.6), split (views into the target).
struct ConnectTarget {
  std::string_view host;  // without brackets for IPv6
  uint16_t port = 0;
};
// nullopt unless `target` is exactly `host:port`: a host as above and a port in 1..65535, which
// CONNECT requires; no userinfo, scheme, path or query.
std::optional<ConnectTarget> parseConnectTarget(std::string_view target);

class EgressFilter : public Filter {
 public:
  // `counters`: where denied requests are counted (outlives the filter).
  EgressFilter(const config::EgressConfig& cfg, InflightRegistry& counters)
      : cfg_(cfg), counters_(counters) {}
  FilterStatus onRequest(Stream& s) override;

 private:
  FilterStatus onConnect(Stream& s);
  FilterStatus onHttp2(Stream& s);
  // egress.allow: true when `host` may be reached; otherwise the 403 is set and counted.
  bool admit(Stream& s, std::string_view host);
  const config::EgressConfig& cfg_;
  InflightRegistry& counters_;
};

}  // namespace sidetrace::filters
