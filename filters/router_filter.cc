#include "filters/router_filter.h"

#include "filters/route_match.h"

namespace sidetrace::filters {

FilterStatus RouterFilter::onRequest(Stream& s) {
  // Every listener but the egress one is a reverse proxy: CONNECT would make it an open tunnel to
  // any host:port the upstream can reach (RFC 9110 §9.3.6 leaves a server free to refuse it). On
  // the egress listener the egress filter checked the target and egress.allow (Stream::tunnel).
  if (s.request.method == "CONNECT" && !s.tunnel) {
    s.local_reply = LocalReply{405, "CONNECT is not supported\n"};
    return FilterStatus::StopIteration;
  }
  auto idx = matchRoute(*s.listener, s.request);
  if (!idx) {
    s.local_reply = LocalReply{404, "no route\n"};
    return FilterStatus::StopIteration;
  }
  s.route_index = *idx;
  s.route = &s.listener->routes[*idx];
  if (s.route->direct_response) {
    s.local_reply = LocalReply{s.route->direct_response->status, s.route->direct_response->body};
    return FilterStatus::StopIteration;
  }
  return FilterStatus::Continue;
}

}  // namespace sidetrace::filters
