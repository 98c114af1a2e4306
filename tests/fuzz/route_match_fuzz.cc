// Route and ignore matching (filters/route_match.h, filters::ignoreMatches) with fuzzed rules and
// requests. Input: up to four routes (path kind, path or regex, host pattern, method, header
// matches), up to four tracing.ignore rules, then the request: method, target, header lines.
// Regexes are compiled by the loader's own function; a pattern it rejects drops the rule.
//
// Properties: the query string never changes which route or ignore rule matches; neither does the
// case of the Host or its port (when no rule looks at the host field itself); a rule made from the
// request's own path (exact, any prefix, quoted regex, ignore path/prefix) matches it; host
// patterns are case-insensitive and "*.suffix" matches any label in front of the suffix.

#include <re2/re2.h>

#include <cstdint>
#include <string>
#include <vector>

#include "config/checks.h"
#include "config/load.h"
#include "filters/route_match.h"
#include "filters/tracing_filter.h"
#include "tests/fuzz/fuzz_input.h"

using sidetrace::filters::RequestHead;
using sidetrace::fuzz::check;
using sidetrace::fuzz::FuzzInput;
namespace config = sidetrace::config;
namespace filters = sidetrace::filters;

namespace {

std::optional<config::Regex> regex(std::string_view source) {
  try {
    return config::detail::compileRegex(std::string(source));
  } catch (const config::ConfigError&) {
    return std::nullopt;
  }
}

std::string lower(std::string_view s) {
  std::string out(s);
  for (char& c : out) {
    c = static_cast<char>(c >= 'A' && c <= 'Z' ? c - 'A' + 'a' : c);
  }
  return out;
}

std::string upper(std::string_view s) {
  std::string out(s);
  for (char& c : out) {
    c = static_cast<char>(c >= 'a' && c <= 'z' ? c - 'a' + 'A' : c);
  }
  return out;
}

bool readRoute(FuzzInput& in, config::Route& route, bool& uses_host_field) {
  auto& m = route.match;
  const uint8_t kinds = in.byte();
  m.path_kind = static_cast<config::RouteMatch::PathKind>(kinds % 4);
  const std::string_view path = in.line(256);
  if (m.path_kind == config::RouteMatch::PathKind::Regex) {
    auto re = regex(path);
    if (!re) {
      return false;
    }
    m.path_regex = std::move(*re);
  } else {
    m.path = path;
  }
  m.host = in.line(256);
  m.method = in.line(32);
  for (int n = (kinds >> 2) % 3; n > 0; --n) {
    config::HeaderMatch h;
    const uint8_t kind = in.byte();
    h.name = lower(in.line(64));
    h.kind = static_cast<config::HeaderMatch::Kind>(kind % 4);
    const std::string_view value = in.line(256);
    if (h.kind == config::HeaderMatch::Kind::Regex) {
      auto re = regex(value);
      if (!re) {
        return false;
      }
      h.regex = std::move(*re);
    } else {
      h.value = value;
    }
    uses_host_field = uses_host_field || h.name == "host";
    m.headers.push_back(std::move(h));
  }
  return true;
}

bool readIgnore(FuzzInput& in, config::IgnoreRule& rule, bool& uses_host_field) {
  rule.kind = static_cast<config::IgnoreRule::Kind>(in.byte() % 4);
  const std::string_view value = in.line(256);
  if (rule.kind == config::IgnoreRule::Kind::Regex) {
    auto re = regex(value);
    if (!re) {
      return false;
    }
    rule.regex = std::move(*re);
  } else {
    rule.value = value;
  }
  rule.header = lower(in.line(64));
  uses_host_field =
      uses_host_field || (rule.kind == config::IgnoreRule::Kind::Header && rule.header == "host");
  return true;
}

struct Outcome {
  std::optional<size_t> route;
  bool ignored;
  bool operator==(const Outcome&) const = default;
};

Outcome match(const config::Listener& l, const std::vector<config::IgnoreRule>& ignore,
              const RequestHead& req) {
  return {filters::matchRoute(l, req), filters::ignoreMatches(ignore, req)};
}

void checkOwnPathMatches(const RequestHead& req) {
  const std::string path(req.path());
  config::RouteMatch exact;
  exact.path_kind = config::RouteMatch::PathKind::Exact;
  exact.path = path;
  check(filters::routeMatches(exact, req), "an exact route of the request's own path", path);
  config::RouteMatch prefix;
  prefix.path_kind = config::RouteMatch::PathKind::Prefix;
  prefix.path = path.substr(0, path.size() / 2);
  check(filters::routeMatches(prefix, req), "a prefix route of the request's own path", path);
  if (auto re = regex("^" + RE2::QuoteMeta(path) + "$")) {
    config::RouteMatch rx;
    rx.path_kind = config::RouteMatch::PathKind::Regex;
    rx.path_regex = std::move(*re);
    check(filters::routeMatches(rx, req), "a quoted-regex route of the request's own path", path);
  }
  std::vector<config::IgnoreRule> ignore(2);
  ignore[0].kind = config::IgnoreRule::Kind::Path;
  ignore[0].value = "\x01never";
  ignore[1].kind = config::IgnoreRule::Kind::Prefix;
  ignore[1].value = path;
  check(filters::ignoreMatches(ignore, req), "an ignore prefix of the request's own path", path);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  FuzzInput in(data, size);
  config::Listener listener;
  std::vector<config::IgnoreRule> ignore;
  bool uses_host_field = false;
  const uint8_t counts = in.byte();
  for (int n = 1 + counts % 4; n > 0; --n) {
    config::Route route;
    if (readRoute(in, route, uses_host_field)) {
      listener.routes.push_back(std::move(route));
    }
  }
  for (int n = (counts >> 2) % 5; n > 0; --n) {
    config::IgnoreRule rule;
    if (readIgnore(in, rule, uses_host_field)) {
      ignore.push_back(std::move(rule));
    }
  }
  RequestHead req;
  req.method = in.line(32);
  req.target = in.line(4096);
  while (!in.empty()) {
    const std::string_view line = in.line();
    const size_t colon = line.find(':');
    if (colon != std::string_view::npos) {
      req.headers.add(std::string(line.substr(0, colon)),
                      std::string(filters::trimOws(line.substr(colon + 1))));
    }
  }

  const Outcome base = match(listener, ignore, req);
  if (base.route) {
    check(filters::routeMatches(listener.routes[*base.route].match, req), "matchRoute disagrees");
  }

  RequestHead with_query = req;
  with_query.target = std::string(req.path()) + "?a=/x&b=" + std::string(req.query()) + "#";
  check(match(listener, ignore, with_query) == base, "the query string changed the match",
        req.target, with_query.target);

  const std::string host(req.host());
  if (!uses_host_field && req.headers.count("host") == 1 && host.find(':') == std::string::npos &&
      !host.empty() && host.front() != '[') {
    RequestHead shouted = req;
    shouted.headers.set("host", upper(*req.headers.get("host")));
    check(match(listener, ignore, shouted) == base, "the Host's case changed the match", host);
    RequestHead ported = req;
    ported.headers.set("host", host + ":8443");
    check(match(listener, ignore, ported) == base, "the Host's port changed the match", host);
    check(filters::hostMatches(host, upper(host)) && filters::hostMatches(upper(host), host),
          "host patterns are case-sensitive", host);
    const size_t dot = host.find('.');
    if (dot != std::string::npos && dot > 0 && dot + 1 < host.size()) {
      check(filters::hostMatches("*" + host.substr(dot), host), "a wildcard host misses", host);
    }
  }
  checkOwnPathMatches(req);
  return 0;
}
