#include "filters/route_match.h"

namespace sidetrace::filters {
namespace {

bool headerMatches(const config::HeaderMatch& m, const RequestHead& req) {
  auto v = req.headers.get(m.name);
  if (!v) {
    return false;
  }
  switch (m.kind) {
    case config::HeaderMatch::Kind::Present:
      return true;
    case config::HeaderMatch::Kind::Exact:
      return *v == m.value;
    case config::HeaderMatch::Kind::Prefix:
      return v->starts_with(m.value);
    case config::HeaderMatch::Kind::Regex:
      return m.regex.matches(*v);
  }
  return false;
}

}  // namespace

bool hostMatches(const std::string& pattern, std::string_view host) {
  if (pattern.empty()) {
    return true;
  }
  if (pattern.starts_with("*.")) {
    std::string_view suffix = std::string_view(pattern).substr(1);  // ".example.com"
    return host.size() > suffix.size() && iequals(host.substr(host.size() - suffix.size()), suffix);
  }
  return iequals(pattern, host);
}

bool routeMatches(const config::RouteMatch& m, const RequestHead& req) {
  std::string_view path = req.path();
  switch (m.path_kind) {
    case config::RouteMatch::PathKind::Any:
      break;
    case config::RouteMatch::PathKind::Exact:
      if (path != m.path) {
        return false;
      }
      break;
    case config::RouteMatch::PathKind::Prefix:
      if (!path.starts_with(m.path)) {
        return false;
      }
      break;
    case config::RouteMatch::PathKind::Regex:
      if (!m.path_regex.matches(path)) {
        return false;
      }
      break;
  }
  if (!m.method.empty() && m.method != req.method) {
    return false;
  }
  if (!hostMatches(m.host, req.host())) {
    return false;
  }
  for (const auto& h : m.headers) {
    if (!headerMatches(h, req)) {
      return false;
    }
  }
  return true;
}

std::optional<size_t> matchRoute(const config::Listener& listener, const RequestHead& req) {
  for (size_t i = 0; i < listener.routes.size(); ++i) {
    if (routeMatches(listener.routes[i].match, req)) {
      return i;
    }
  }
  return std::nullopt;
}

}  // namespace sidetrace::filters
