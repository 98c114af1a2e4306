#include "filters/egress_filter.h"

#include <charconv>

#include "filters/route_match.h"
#include "filters/transparent_egress.h"

namespace sidetrace::filters {

namespace {

bool nameChar(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' ||
         c == '.' || c == '_';
}

bool ipv6Char(char c) {
  return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F') || c == ':' ||
         c == '.';
}

// `authority` as host[:port] or [v6][:port]: the host (without brackets) and the port's digits
// ("" when there is no port). False when it is not of that shape or holds userinfo.
bool splitAuthority(std::string_view auth, std::string_view& host, std::string_view& port,
                    bool& has_port) {
  if (auth.find('@') != std::string_view::npos) {
    return false;  // userinfo: credentials in a URL are deprecated (RFC 9110 §4.2.4)
  }
  std::string_view after;
  if (auth.starts_with('[')) {
    const size_t close = auth.find(']');
    if (close == std::string_view::npos) {
      return false;
    }
    host = auth.substr(1, close - 1);
    after = auth.substr(close + 1);
    for (char c : host) {
      if (!ipv6Char(c)) {
        return false;
      }
    }
  } else {
    const size_t colon = auth.find(':');
    host = auth.substr(0, colon);
    after = colon == std::string_view::npos ? std::string_view() : auth.substr(colon);
    for (char c : host) {
      if (!nameChar(c)) {
        return false;
      }
    }
  }
  has_port = !after.empty();
  if (has_port && after[0] != ':') {
    return false;
  }
  port = has_port ? after.substr(1) : std::string_view();
  return !host.empty();
}

// A port in 1..65535, digits only.
std::optional<uint16_t> parsePort(std::string_view port) {
  unsigned v = 0;
  auto [p, ec] = std::from_chars(port.data(), port.data() + port.size(), v);
  if (port.empty() || ec != std::errc() || p != port.data() + port.size() || v == 0 || v > 65535) {
    return std::nullopt;
  }
  return static_cast<uint16_t>(v);
}

}  // namespace

std::optional<AbsoluteTarget> parseAbsoluteTarget(std::string_view target) {
  constexpr std::string_view kScheme = "http://";
  if (target.size() < kScheme.size() || !iequals(target.substr(0, kScheme.size()), kScheme)) {
    return std::nullopt;
  }
  std::string_view rest = target.substr(kScheme.size());
  const size_t end = rest.find_first_of("/?#");
  AbsoluteTarget t;
  t.authority = rest.substr(0, end);
  t.rest = end == std::string_view::npos ? std::string_view() : rest.substr(end);
  std::string_view port;
  bool has_port = false;
  if (!splitAuthority(t.authority, t.host, port, has_port)) {
    return std::nullopt;
  }
  if (has_port) {  // "host:" alone is the default port (RFC 3986 §3.2.3)
    if (port.empty()) {
      return t;
    }
    auto p = parsePort(port);
    if (!p) {
      return std::nullopt;
    }
    t.port = *p;
  }
  return t;
}

std::optional<ConnectTarget> parseConnectTarget(std::string_view target) {
  ConnectTarget t;
  std::string_view port;
  bool has_port = false;
  if (!splitAuthority(target, t.host, port, has_port) || !has_port) {
    return std::nullopt;
  }
  auto p = parsePort(port);
  if (!p) {
    return std::nullopt;
  }
  t.port = *p;
  return t;
}

namespace {

FilterStatus reply(Stream& s, int status, std::string body) {
  s.local_reply = LocalReply{status, std::move(body)};
  return FilterStatus::StopIteration;
}

void setDestination(Stream& s, std::string_view host, uint16_t port) {
  s.egress_host.assign(host);
  for (char& c : s.egress_host) {
    c = (c >= 'A' && c <= 'Z') ? static_cast<char>(c + 32) : c;
  }
  s.egress_port = port;
}

}  // namespace

bool EgressFilter::admit(Stream& s, std::string_view host) {
  if (cfg_.allow.empty()) {
    return true;
  }
  for (const auto& pattern : cfg_.allow) {
    if (hostMatches(pattern, host)) {
      return true;
    }
  }
  counters_.countDenied();
  std::string body = "egress to '";
  body += host;
  body += "' is not allowed (egress.allow)\n";
  reply(s, 403, std::move(body));
  return false;
}

FilterStatus EgressFilter::onRequest(Stream& s) {
  if (!s.listener->egress) {
    return FilterStatus::Continue;
  }
  auto& req = s.request;
  if (s.original_dst.port != 0 && req.method != "CONNECT") {
    return handleRedirected(s, cfg_, counters_);  // transparent mode (transparent_egress.h)
  }
  if (req.method == "CONNECT") {
    return onConnect(s);
  }
  if (s.http2) {
    return onHttp2(s);
  }
  std::string_view target = req.target;
  if (target.size() >= 8 && iequals(target.substr(0, 8), "https://")) {
    return reply(s, 400,
                 "https destinations are reached through a CONNECT tunnel: name the egress "
                 "listener in HTTPS_PROXY\n");
  }
  auto t = parseAbsoluteTarget(target);
  if (!t) {
    return reply(s, 400,
                 "the egress listener is a forward proxy: it expects absolute-form "
                 "requests (GET http://host:port/path), as clients send them to the "
                 "proxy named by HTTP_PROXY\n");
  }
  if (!admit(s, t->host)) {
    return FilterStatus::StopIteration;
  }
  setDestination(s, t->host, t->port);
  // RFC 9112 §3.2.2: the target's authority replaces whatever Host the client sent.
  std::string authority(t->authority);
  req.headers.set("host", authority);
  std::string origin = t->rest.empty() || t->rest[0] != '/' ? "/" : "";
  origin.append(t->rest.substr(0, t->rest.find('#')));
  req.target = std::move(origin);
  return FilterStatus::Continue;
}

// HTTP/2 has no absolute form: a request sent to a proxy names its destination in :authority
// (RFC 9113 §8.3.1), which the HTTP/2 server already put in Host. The path stays as sent, and the
// exchange reaches the destination over HTTP/2 too (prior knowledge): a client that speaks h2c to
// its proxy speaks it for its destination (gRPC, h2c services).
FilterStatus EgressFilter::onHttp2(Stream& s) {
  const auto authority = s.request.headers.get("host");
  std::string url = "http://";
  url += authority.value_or(std::string_view());
  auto t = parseAbsoluteTarget(url);
  if (!authority || !t || !t->rest.empty()) {
    return reply(s, 400,
                 "an HTTP/2 request to the egress listener names its destination in :authority "
                 "(host[:port])\n");
  }
  if (!admit(s, t->host)) {
    return FilterStatus::StopIteration;
  }
  setDestination(s, t->host, t->port);
  return FilterStatus::Continue;
}

// HTTP/1.1 CONNECT only: over HTTP/2 a tunnel is a stream (RFC 9113 §8.5), which the exchange
// cannot carry; such a client is told to use HTTP/1.1, which every HTTPS_PROXY client speaks.
FilterStatus EgressFilter::onConnect(Stream& s) {
  if (s.http2) {
    return reply(s, 501,
                 "CONNECT over HTTP/2 is not supported by the egress listener: send it over "
                 "HTTP/1.1\n");
  }
  auto t = parseConnectTarget(s.request.target);
  if (!t) {
    return reply(s, 400,
                 "CONNECT needs an authority-form target host:port with a port in 1..65535 "
                 "(CONNECT api.example.com:443 HTTP/1.1)\n");
  }
  if (!admit(s, t->host)) {
    return FilterStatus::StopIteration;
  }
  setDestination(s, t->host, t->port);
  s.tunnel = true;
  return FilterStatus::Continue;
}

}  // namespace sidetrace::filters
