#pragma once
// Transparent egress: a connection the app opened to its own destination and iptables redirected
// to the egress listener (REDIRECT in the nat OUTPUT chain, as k8s/egress-iptables.sh sets up;
// the proxy reads where it was headed with SO_ORIGINAL_DST into Stream::original_dst). Its
// requests are what the app sent the destination (`GET /path` + Host): they go to the original
// IP:port as they are (no name is looked up, Host stays), and the Host's name is the CLIENT span's
// server.address. Everything else — CLIENT span, parent inference, traceparent — is the egress
// path's, as for forward-proxy requests.
//   egress.allow: a pattern may name the Host or the destination IP; either allows.
//   Loops → 508 (RFC 5842): the redirect pointed at the egress listener itself, or the request
//   carries this process's Via token (its own upstream connection was redirected back to it:
//   the rules do not exclude sidetrace's uid). Requests that go on get that token in Via.

#include <string>
#include <string_view>

#include "config/config.h"
#include "filters/filter.h"
#include "filters/inflight_registry.h"

namespace sidetrace::filters {

// For EgressFilter, on a redirected connection (s.original_dst.port != 0).
FilterStatus handleRedirected(Stream& s, const config::EgressConfig& cfg,
                              InflightRegistry& counters);

// "sidetrace-" and 16 hex digits, random per process: the received-by of the Via this process
// adds, which no other proxy's can be.
std::string_view viaToken();

// The name in a Host header value: lower-cased, without the port, IPv6 without brackets; "" when
// the value has no usable name.
std::string hostName(std::string_view host_header);

}  // namespace sidetrace::filters
