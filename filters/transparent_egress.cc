#include "filters/transparent_egress.h"

#include <random>

#include "filters/route_match.h"

namespace sidetrace::filters {

std::string_view viaToken() {
  static const std::string token = [] {
    std::random_device rd;
    const uint64_t v = (uint64_t{rd()} << 32) ^ rd();
    static constexpr char kHex[] = "0123456789abcdef";
    std::string t = "sidetrace-";
    for (int shift = 60; shift >= 0; shift -= 4) {
      t += kHex[(v >> shift) & 0xf];
    }
    return t;
  }();
  return token;
}

std::string hostName(std::string_view v) {
  v = trimOws(v);
  std::string_view name;
  if (v.starts_with('[')) {
    const size_t close = v.find(']');
    if (close == std::string_view::npos) {
      return "";
    }
    name = v.substr(1, close - 1);
  } else {
    name = v.substr(0, v.find(':'));
  }
  std::string out(name);
  for (char& c : out) {
    c = (c >= 'A' && c <= 'Z') ? static_cast<char>(c + 32) : c;
  }
  return out;
}

namespace {

FilterStatus reply(Stream& s, int status, std::string body) {
  s.local_reply = LocalReply{status, std::move(body)};
  return FilterStatus::StopIteration;
}

bool carriesOwnVia(const HeaderMap& headers) {
  for (const auto& h : headers) {
    if (iequals(h.name, "via") && h.value.find(viaToken()) != std::string::npos) {
      return true;
    }
  }
  return false;
}

bool allowed(const config::EgressConfig& cfg, std::string_view host, std::string_view ip) {
  if (cfg.allow.empty()) {
    return true;
  }
  for (const auto& pattern : cfg.allow) {
    if ((!host.empty() && hostMatches(pattern, host)) || hostMatches(pattern, ip)) {
      return true;
    }
  }
  return false;
}

}  // namespace

FilterStatus handleRedirected(Stream& s, const config::EgressConfig& cfg,
                              InflightRegistry& counters) {
  const OriginalDestination& dst = s.original_dst;
  if (dst.is_listener) {
    return reply(s, 508,
                 "this connection was redirected to the egress listener's own address: "
                 "forwarding it would loop\n");
  }
  auto& req = s.request;
  if (carriesOwnVia(req.headers)) {
    return reply(s, 508,
                 "egress loop: sidetrace's own outbound connection was redirected back to it; "
                 "the iptables rules must exclude sidetrace's uid (--uid-owner)\n");
  }
  std::string host;
  if (auto h = req.headers.get("host")) {
    host = hostName(*h);
  }
  if (!allowed(cfg, host, dst.address)) {
    counters.countDenied();
    return reply(s, 403,
                 "egress to '" + (host.empty() ? dst.address : host) + "' (" + dst.address +
                     ") is not allowed (egress.allow)\n");
  }
  s.egress_host = host.empty() ? dst.address : std::move(host);
  s.egress_port = dst.port;
  s.egress_address = dst.address;
  std::string via = req.version_minor == 0 ? "1.0 " : "1.1 ";
  via += viaToken();
  req.headers.add("via", via);
  return FilterStatus::Continue;
}

}  // namespace sidetrace::filters
