#pragma once
// Transparent egress: where a connection accepted on the egress listener was headed before an
// iptables REDIRECT rewrote its destination. The kernel's connection tracking keeps the original
// destination and hands it out as SO_ORIGINAL_DST (IPv4) / IP6T_SO_ORIGINAL_DST (IPv6); a
// connection that was not redirected has none, or has the listener's own address. One getsockopt
// per connection, on the egress listener only.

#include <boost/asio/ip/tcp.hpp>

#include "filters/stream.h"

namespace sidetrace::proxy {

// The original destination of `socket`, whose local address is `local`; port 0 when it was not
// redirected. is_listener is set when it names this host's egress port (a redirect to the
// listener itself, or to another of this host's addresses on its port): forwarding would loop.
filters::OriginalDestination originalDestination(boost::asio::ip::tcp::socket& socket,
                                                 const boost::asio::ip::tcp::endpoint& local);

}  // namespace sidetrace::proxy
