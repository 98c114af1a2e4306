#include "upstream/egress_destinations.h"

namespace sidetrace::upstream {

std::string EgressDestinations::key(std::string_view host, uint16_t port) {
  std::string k(host);
  k += ':';
  k += std::to_string(port);
  return k;
}

const Endpoint* EgressDestinations::lookup(std::string_view host, uint16_t port,
                                           std::chrono::steady_clock::time_point now) {
  const std::string k = key(host, port);
  std::lock_guard lock(mu_);
  auto it = answers_.find(k);
  if (it == answers_.end() || now - it->second.at >= kEgressDnsTtl) {
    return nullptr;
  }
  return &(*cluster_.endpoints)[it->second.index];
}

const Endpoint* EgressDestinations::record(std::string_view host, uint16_t port,
                                           const boost::asio::ip::tcp::endpoint& address,
                                           std::chrono::steady_clock::time_point now) {
  std::lock_guard lock(mu_);
  EndpointTable& table = *cluster_.endpoints;
  // The same destination at the same address keeps its endpoint (and its idle connections).
  std::optional<size_t> index;
  for (size_t i = 0, n = table.size(); i < n; ++i) {
    if (table[i].port == port && table[i].address == address && table[i].host == host) {
      index = i;
      break;
    }
  }
  if (!index) {
    Endpoint ep;
    ep.host = std::string(host);
    ep.port = port;
    ep.address = address;
    nameEndpoint(ep, *cluster_.cfg);
    index = table.add(std::move(ep));
    if (!index) {
      return nullptr;
    }
  }
  answers_[key(host, port)] = Answer{*index, now};
  return &table[*index];
}

const Endpoint* EgressDestinations::direct(std::string_view host,
                                           const boost::asio::ip::tcp::endpoint& address) {
  std::string k(host);
  k += ' ';
  k += address.address().to_string();
  k += ':';
  k += std::to_string(address.port());
  std::lock_guard lock(mu_);
  EndpointTable& table = *cluster_.endpoints;
  if (auto it = direct_.find(k); it != direct_.end()) {
    return &table[it->second];
  }
  Endpoint ep;
  ep.host = std::string(host);
  ep.port = address.port();
  ep.address = address;
  nameEndpoint(ep, *cluster_.cfg);
  const auto index = table.add(std::move(ep));
  if (!index) {
    return nullptr;
  }
  direct_.emplace(std::move(k), *index);
  return &table[*index];
}

}  // namespace sidetrace::upstream
