#include "proxy/original_dst.h"

#include <ifaddrs.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <cstring>
#include <optional>

namespace sidetrace::proxy {

namespace asio = boost::asio;
using asio::ip::tcp;

namespace {

// SO_ORIGINAL_DST (linux/netfilter_ipv4.h) and IP6T_SO_ORIGINAL_DST
// (linux/netfilter_ipv6/ip6_tables.h) share the number; those headers clash with <netinet/in.h>.
constexpr int kSoOriginalDst = 80;

// An IPv4 peer of a dual-stack socket as the IPv4 address it is.
tcp::endpoint unmapped(tcp::endpoint ep) {
  if (ep.address().is_v6() && ep.address().to_v6().is_v4_mapped()) {
    ep.address(asio::ip::make_address_v4(asio::ip::v4_mapped, ep.address().to_v6()));
  }
  return ep;
}

std::optional<tcp::endpoint> asEndpoint(const sockaddr_storage& ss, socklen_t len) {
  tcp::endpoint ep;
  if ((ss.ss_family != AF_INET && ss.ss_family != AF_INET6) || len > ep.capacity()) {
    return std::nullopt;
  }
  std::memcpy(ep.data(), &ss, len);
  ep.resize(len);
  return unmapped(ep);
}

// The length must be exactly the address family's: older kernels refuse any other.
std::optional<tcp::endpoint> queryOriginal(int fd, bool v6) {
  sockaddr_storage ss{};
  socklen_t len = sizeof(sockaddr_in6);
  if (v6 && ::getsockopt(fd, SOL_IPV6, kSoOriginalDst, &ss, &len) == 0) {
    return asEndpoint(ss, len);
  }
  len = sizeof(sockaddr_in);  // an IPv4 connection on a dual-stack socket: an IPv4 entry
  if (::getsockopt(fd, SOL_IP, kSoOriginalDst, &ss, &len) == 0) {
    return asEndpoint(ss, len);
  }
  return std::nullopt;  // ENOENT: no NAT entry; ENOPROTOOPT: no conntrack at all
}

bool isLocalAddress(const asio::ip::address& a) {
  if (a.is_loopback() || a.is_unspecified()) {
    return true;
  }
  ifaddrs* list = nullptr;
  if (::getifaddrs(&list) != 0) {
    return false;
  }
  bool found = false;
  for (ifaddrs* i = list; i != nullptr && !found; i = i->ifa_next) {
    if (i->ifa_addr == nullptr) {
      continue;
    }
    if (i->ifa_addr->sa_family == AF_INET && a.is_v4()) {
      const auto* sin = reinterpret_cast<const sockaddr_in*>(i->ifa_addr);
      found = std::memcmp(&sin->sin_addr, a.to_v4().to_bytes().data(), 4) == 0;
    } else if (i->ifa_addr->sa_family == AF_INET6 && a.is_v6()) {
      const auto* sin6 = reinterpret_cast<const sockaddr_in6*>(i->ifa_addr);
      found = std::memcmp(&sin6->sin6_addr, a.to_v6().to_bytes().data(), 16) == 0;
    }
  }
  ::freeifaddrs(list);
  return found;
}

}  // namespace

filters::OriginalDestination originalDestination(tcp::socket& socket, const tcp::endpoint& local) {
  filters::OriginalDestination out;
  auto orig = queryOriginal(socket.native_handle(), local.address().is_v6());
  if (!orig || *orig == unmapped(local) || orig->port() == 0) {
    return out;
  }
  out.address = orig->address().to_string();
  out.port = orig->port();
  // Only when the port is the listener's: that check alone is cheap, the interface list is not.
  out.is_listener = orig->port() == local.port() && isLocalAddress(orig->address());
  return out;
}

}  // namespace sidetrace::proxy
