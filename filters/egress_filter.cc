#include "filters/egress_filter.h"

#include <charconv>

#include "filters/route_match.h"
#include "filters/transparent_egress.h"

namespace sidetrace::filters {

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
  std::string_view auth = t.authority;
  if (auth.find('@') != std::string_view::npos) {
    return std::nullopt;  // userinfo: credentials in a URL are deprecated (RFC 9110 §4.2.4)
  }
  std::string_view port;
  if (auth.starts_with('[')) {
    const size_t close = auth.find(']');
    if (close == std::string_view::npos) {
      return std::nullopt;
    }
    t.host = auth.substr(1, close - 1);
    std::string_view after = auth.substr(close + 1);
    if (!after.empty()) {
      if (after[0] != ':') {
        return std::nullopt;
      }
      port = after.substr(1);
    }
  } else {
    const size_t colon = auth.find(':');
    t.host = auth.substr(0, colon);
    if (colon != std::string_view::npos) {
      port = auth.substr(colon + 1);
    }
  }
  if (t.host.empty()) {
    return std::nullopt;
  }
  if (!port.empty()) {
    unsigned v = 0;
    auto [p, ec] = std::from_chars(port.data(), port.data() + port.size(), v);
    if (ec != std::errc() || p != port.data() + port.size() || v == 0 || v > 65535) {
      return std::nullopt;
    }
    t.port = static_cast<uint16_t>(v);
  }
  return t;
}

namespace {

FilterStatus reply(Stream& s, int status, std::string body) {
  s.local_reply = LocalReply{status, std::move(body)};
  return FilterStatus::StopIteration;
}

}  // namespace

FilterStatus EgressFilter::onRequest(Stream& s) {
  if (!s.listener->egress) {
    return FilterStatus::Continue;
  }
  auto& req = s.request;
  if (s.original_dst.port != 0 && req.method != "CONNECT") {
    return handleRedirected(s, cfg_, counters_);  // transparent mode (transparent_egress.h)
  }
  if (req.method == "CONNECT") {
    return reply(s, 405, "CONNECT is not supported by the egress listener yet\n");
  }
  std::string_view target = req.target;
  if (target.size() >= 8 && iequals(target.substr(0, 8), "https://")) {
    return reply(s, 400,
                 "https destinations need CONNECT, which the egress listener does not "
                 "support yet\n");
  }
  auto t = parseAbsoluteTarget(target);
  if (!t) {
    return reply(s, 400,
                 "the egress listener is a forward proxy: it expects absolute-form "
                 "requests (GET http://host:port/path), as clients send them to the "
                 "proxy named by HTTP_PROXY\n");
  }
  if (!cfg_.allow.empty()) {
    bool allowed = false;
    for (const auto& pattern : cfg_.allow) {
      allowed = allowed || hostMatches(pattern, t->host);
    }
    if (!allowed) {
      counters_.countDenied();
      std::string body = "egress to '";
      body += t->host;
      body += "' is not allowed (egress.allow)\n";
      return reply(s, 403, std::move(body));
    }
  }
  s.egress_host.assign(t->host);
  for (char& c : s.egress_host) {
    c = (c >= 'A' && c <= 'Z') ? static_cast<char>(c + 32) : c;
  }
  s.egress_port = t->port;
  // RFC 9112 §3.2.2: the target's authority replaces whatever Host the client sent.
  std::string authority(t->authority);
  req.headers.set("host", authority);
  std::string origin = t->rest.empty() || t->rest[0] != '/' ? "/" : "";
  origin.append(t->rest.substr(0, t->rest.find('#')));
  req.target = std::move(origin);
  return FilterStatus::Continue;
}

}  // namespace sidetrace::filters
