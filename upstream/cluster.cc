#include "upstream/cluster.h"

#include <algorithm>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/address.hpp>
#include <stdexcept>

#include "upstream/egress_destinations.h"
#include "upstream/tls_client_context.h"

namespace sidetrace::upstream {

namespace {

constexpr size_t kCountersPerLine = 64 / sizeof(std::atomic<uint64_t>);
// Room a DNS-refreshed cluster keeps for addresses that appear later (pods replaced, scaled out),
// on top of what it started with: at least this many, or this many per configured name.
constexpr size_t kMinSpareEndpoints = 256;
constexpr size_t kSpareEndpointsPerName = 16;

}  // namespace

EndpointTable::EndpointTable(size_t capacity, size_t workers)
    : capacity_(capacity),
      slots_(new Endpoint[capacity]),
      present_(new std::atomic<bool>[capacity]),
      workers_(std::max<size_t>(workers, 1)),
      stride_((capacity + kCountersPerLine - 1) / kCountersPerLine * kCountersPerLine),
      picks_(new std::atomic<uint64_t>[workers_ * stride_]),
      ejections_(new std::atomic<uint64_t>[capacity]) {
  for (size_t i = 0; i < capacity_; ++i) {
    present_[i].store(false, std::memory_order_relaxed);
    ejections_[i].store(0, std::memory_order_relaxed);
  }
  for (size_t i = 0; i < workers_ * stride_; ++i) {
    picks_[i].store(0, std::memory_order_relaxed);
  }
}

EndpointTable::EndpointTable(std::vector<Endpoint> endpoints, size_t workers)
    : EndpointTable(endpoints.size(), workers) {
  for (auto& ep : endpoints) {
    add(std::move(ep));
  }
}

const Endpoint& EndpointTable::at(size_t i) const {
  if (i >= size()) {
    throw std::out_of_range("endpoint index " + std::to_string(i));
  }
  return slots_[i];
}

size_t EndpointTable::presentCount() const {
  size_t n = 0;
  for (size_t i = 0, end = size(); i < end; ++i) {
    n += present(i) ? 1 : 0;
  }
  return n;
}

uint64_t EndpointTable::picks(size_t i) const {
  uint64_t n = 0;
  for (size_t w = 0; w < workers_; ++w) {
    n += picks_[w * stride_ + i].load(std::memory_order_relaxed);
  }
  return n;
}

std::optional<size_t> EndpointTable::add(Endpoint ep) {
  const size_t i = size_.load(std::memory_order_relaxed);
  if (i == capacity_) {
    return std::nullopt;
  }
  slots_[i] = std::move(ep);
  present_[i].store(true, std::memory_order_relaxed);
  size_.store(i + 1, std::memory_order_release);  // publishes the slot written above
  version_.fetch_add(1, std::memory_order_release);
  return i;
}

void EndpointTable::setPresent(size_t i, bool present) {
  if (present_[i].load(std::memory_order_relaxed) != present) {
    present_[i].store(present, std::memory_order_relaxed);
    version_.fetch_add(1, std::memory_order_release);
  }
}

void nameEndpoint(Endpoint& ep, const config::Cluster& c) {
  boost::system::error_code ec;
  const auto ip = boost::asio::ip::make_address(ep.host, ec);
  const bool is_ip = !ec;
  if (c.tls) {
    ep.tls_sni = !c.tls->sni.empty() ? c.tls->sni : is_ip ? "" : ep.host;
    ep.tls_name = !c.tls->sni.empty() ? c.tls->sni : ep.host;
    ep.tls_name_is_ip = c.tls->sni.empty() && is_ip;
  }
  const bool named_by_sni = c.tls && !c.tls->sni.empty();
  ep.authority = named_by_sni ? c.tls->sni : is_ip && ip.is_v6() ? "[" + ep.host + "]" : ep.host;
  if (ep.port != (c.tls ? 443 : 80)) {
    ep.authority += ":" + std::to_string(ep.port);
  }
  const auto addr = ep.address.address();
  ep.label = (addr.is_v6() ? "[" + addr.to_string() + "]" : addr.to_string()) + ":" +
             std::to_string(ep.address.port());
}

std::vector<boost::asio::ip::tcp::endpoint> preferredAddresses(
    const boost::asio::ip::tcp::resolver::results_type& results) {
  std::vector<boost::asio::ip::tcp::endpoint> v4;
  std::vector<boost::asio::ip::tcp::endpoint> v6;
  for (const auto& r : results) {
    auto& into = r.endpoint().address().is_v4() ? v4 : v6;
    if (std::find(into.begin(), into.end(), r.endpoint()) == into.end()) {
      into.push_back(r.endpoint());
    }
  }
  return v4.empty() ? v6 : v4;
}

void inheritEndpointState(std::vector<ResolvedCluster>& next,
                          const std::vector<ResolvedCluster>& prev) {
  for (auto& n : next) {
    auto old = std::find_if(prev.begin(), prev.end(),
                            [&](const ResolvedCluster& p) { return p.cfg->name == n.cfg->name; });
    if (old == prev.end()) {
      continue;
    }
    const bool health = n.health && old->health && *n.cfg->health_check == *old->cfg->health_check;
    const bool outliers = n.outliers && old->outliers;
    if (!health && !outliers) {
      continue;
    }
    const EndpointTable& from = *old->endpoints;
    for (size_t i = 0, end = n.endpoints->size(); i < end; ++i) {
      const Endpoint& ep = (*n.endpoints)[i];
      for (size_t j = 0, old_end = from.size(); j < old_end; ++j) {
        if (from[j].address != ep.address || from[j].host != ep.host) {
          continue;
        }
        if (health) {
          n.health->set(i, old->health->healthy(j));
        }
        if (outliers) {
          n.outliers->inherit(i, *old->outliers, j);
        }
        break;
      }
    }
  }
}

std::vector<ResolvedCluster> resolveClusters(const config::Config& cfg, size_t workers) {
  boost::asio::io_context io;
  boost::asio::ip::tcp::resolver resolver(io);
  std::vector<ResolvedCluster> out;
  for (size_t i = 0; i < cfg.clusters.size(); ++i) {
    const config::Cluster& c = cfg.clusters[i];
    ResolvedCluster rc;
    rc.cfg = &c;
    rc.breakers = std::make_shared<CircuitBreakers>(c.circuit_breakers);
    if (c.tls) {
      rc.tls = std::make_shared<TlsClientContext>(*c.tls, c.protocol,
                                                  "clusters[" + std::to_string(i) + "].tls");
    }
    std::vector<Endpoint> eps;
    size_t names = 0;
    for (size_t k = 0; k < c.endpoints.size(); ++k) {
      const auto& hp = c.endpoints[k];
      boost::system::error_code ec;
      boost::asio::ip::make_address(hp.host, ec);
      names += ec ? 1 : 0;
      auto results = resolver.resolve(hp.host, std::to_string(hp.port), ec);
      if (ec) {
        throw std::runtime_error("cluster '" + c.name + "': cannot resolve " + hp.str() + ": " +
                                 ec.message());
      }
      for (const auto& addr : preferredAddresses(results)) {
        Endpoint ep;
        ep.host = hp.host;
        ep.port = hp.port;
        ep.address = addr;
        ep.weight = hp.weight;
        ep.config_index = k;
        nameEndpoint(ep, c);
        eps.push_back(std::move(ep));
      }
    }
    rc.refreshes_dns = names > 0 && c.dns_refresh_rate.count() > 0;
    const size_t capacity =
        c.egress ? kEgressCapacity
                 : eps.size() + (rc.refreshes_dns
                                     ? std::max(kMinSpareEndpoints, kSpareEndpointsPerName * names)
                                     : 0);
    rc.endpoints = std::make_shared<EndpointTable>(capacity, workers);
    for (auto& ep : eps) {
      rc.endpoints->add(std::move(ep));
    }
    if (c.health_check) {
      rc.health = std::make_shared<EndpointHealth>(capacity);
    }
    if (c.outlierDetection().enabled()) {
      rc.outliers = std::make_shared<OutlierDetector>(c.outlierDetection(), capacity);
    }
    out.push_back(std::move(rc));
  }
  return out;
}

}  // namespace sidetrace::upstream
