#pragma once
// Egress: the first filter on the egress listener, where the app's outbound HTTP arrives as
// forward-proxy requests (clients honouring HTTP_PROXY send `GET http://host:port/path`). It
// takes the destination from the absolute-form target, applies egress.allow, and leaves an
// ordinary origin-form request whose Host names the destination (RFC 9112 §3.2.2), so the rest
// of the chain and the exchange treat it like any other. Ingress listeners pass untouched.
// A connection iptables redirected to the listener (transparent mode) is handed to
// handleRedirected (transparent_egress.h) instead: its requests are origin-form by nature.
//   not absolute-form (origin-form, a bare authority) → 400;  https:// → 400 (needs CONNECT);
//   CONNECT → 405 (not yet supported);  a destination egress.allow does not list → 403 (counted).

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
// 1..65535, and no userinfo. The scheme is matched case-insensitively.
std::optional<AbsoluteTarget> parseAbsoluteTarget(std::string_view target);

class EgressFilter : public Filter {
 public:
  // `counters`: where denied requests are counted (outlives the filter).
  EgressFilter(const config::EgressConfig& cfg, InflightRegistry& counters)
      : cfg_(cfg), counters_(counters) {}
  FilterStatus onRequest(Stream& s) override;

 private:
  const config::EgressConfig& cfg_;
  InflightRegistry& counters_;
};

}  // namespace sidetrace::filters
