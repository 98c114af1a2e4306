#pragma once
// Clusters as the workers see them: each configured endpoint's addresses as endpoints of their
// own, kept current by DNS refresh, and each TLS cluster's client context, shared read-only by all
// workers.
//
// Why a fixed-capacity, append-only table rather than a list swapped on change: workers keep
// per-endpoint state by index (idle connections, active requests, outlier ejection) and in-flight
// requests hold `const Endpoint&`. An endpoint's slot is never reused or moved while its
// generation lives, so none of that needs a lock, a reference count or a remap. DNS refresh (one
// writer, the generation's monitor thread) appends new addresses and flips `present` for the ones
// that went away; a worker notices the version change at its next pick and rebuilds its balancer
// over the present endpoints. Requests already on a removed endpoint finish there: nothing drops.

#include <atomic>
#include <boost/asio/ip/tcp.hpp>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "config/config.h"
#include "upstream/circuit_breakers.h"
#include "upstream/health_checker.h"
#include "upstream/outlier_detector.h"
#include "upstream/own_counter.h"

namespace sidetrace::upstream {

class TlsClientContext;

struct Endpoint {
  std::string host;  // as configured (a DNS name or an IP)
  uint16_t port = 0;
  boost::asio::ip::tcp::endpoint address;  // one address `host` resolves to
  // The Host header for a request that arrived without one: the cluster's TLS sni when set, else
  // host (IPv6 in brackets); ":port" unless it is the scheme's default (80, or 443 with TLS).
  std::string authority;
  // TLS clusters only. tls_sni: the SNI sent ("" for an IP endpoint without sni:). tls_name: what
  // the certificate must name, a DNS name or, when tls_name_is_ip, an IP address.
  std::string tls_sni;
  std::string tls_name;
  bool tls_name_is_ip = false;
  uint32_t weight = 1;  // its share of the load balancer's picks (clusters[].endpoints[].weight)
  size_t config_index = 0;  // which clusters[].endpoints[] entry it came from
  std::string label;        // the address as "ip:port" ("[ip]:port" for IPv6): metrics, logs
};

class EndpointTable {
 public:
  // Room for `capacity` endpoints over the generation's life; `workers` counter shards for LB
  // picks (one per worker, each on its own cache lines).
  EndpointTable(size_t capacity, size_t workers);
  // A table holding exactly these endpoints, all present (tests; clusters of IPs only).
  explicit EndpointTable(std::vector<Endpoint> endpoints, size_t workers = 1);

  // Endpoints published so far, present or not. Indexes below it are safe to read.
  size_t size() const { return size_.load(std::memory_order_acquire); }
  size_t capacity() const { return capacity_; }
  const Endpoint& operator[](size_t i) const { return slots_[i]; }
  const Endpoint& at(size_t i) const;  // throws std::out_of_range at or past size()
  const Endpoint* data() const { return slots_.get(); }
  const Endpoint* begin() const { return data(); }
  const Endpoint* end() const { return data() + size(); }
  size_t indexOf(const Endpoint& ep) const { return static_cast<size_t>(&ep - data()); }

  // False once DNS no longer returns its address: no new requests, idle connections closed.
  bool present(size_t i) const { return present_[i].load(std::memory_order_relaxed); }
  size_t presentCount() const;
  // Bumped (release) after every add or presence change; a reader that loads it (acquire) sees
  // every change it counts.
  uint64_t version() const { return version_.load(std::memory_order_acquire); }

  // One LB pick of endpoint i by `worker` (relaxed; only that worker writes its shard).
  void countPick(size_t worker, size_t i) const { addOwn(picks_[worker * stride_ + i]); }
  uint64_t picks(size_t i) const;  // all workers'
  size_t workers() const { return workers_; }
  // Outlier detection ejected endpoint i on some worker (rare: one shared counter each).
  void countEjection(size_t i) const { ejections_[i].fetch_add(1, std::memory_order_relaxed); }
  uint64_t ejections(size_t i) const { return ejections_[i].load(std::memory_order_relaxed); }

  // Writer side: one thread at a time (resolveClusters, then the monitor thread).
  std::optional<size_t> add(Endpoint ep);  // nullopt when full
  void setPresent(size_t i, bool present);

 private:
  size_t capacity_;
  std::unique_ptr<Endpoint[]> slots_;
  std::unique_ptr<std::atomic<bool>[]> present_;
  std::atomic<size_t> size_{0};
  std::atomic<uint64_t> version_{0};
  size_t workers_;
  size_t stride_;  // capacity rounded up to whole cache lines of counters
  std::unique_ptr<std::atomic<uint64_t>[]> picks_;
  std::unique_ptr<std::atomic<uint64_t>[]> ejections_;
};

struct ResolvedCluster {
  const config::Cluster* cfg = nullptr;
  std::shared_ptr<EndpointTable> endpoints;   // never null once resolved
  std::shared_ptr<TlsClientContext> tls;      // null: plain TCP
  std::shared_ptr<CircuitBreakers> breakers;  // shared by the workers; never null
  std::shared_ptr<EndpointHealth> health;     // clusters with a health_check; else null
  std::shared_ptr<OutlierDetector> outliers;  // null when outlier detection is off
  // Some endpoint is a DNS name and dns_refresh_rate is set: the monitor re-resolves it.
  bool refreshes_dns = false;
};

// Fills ep's authority, TLS names and label (above) from its host, port, address and the
// cluster's settings.
void nameEndpoint(Endpoint& ep, const config::Cluster& c);

// The addresses `results` holds that a cluster connects to: IPv4 ones when there are any, else
// IPv6 (Envoy's V4_PREFERRED), in the resolver's order, without duplicates.
std::vector<boost::asio::ip::tcp::endpoint> preferredAddresses(
    const boost::asio::ip::tcp::resolver::results_type& results);

// On reload: carries over to `next` what the previous generation learned about the endpoints it
// shares with `prev` (same cluster name and address): health verdicts, when the health_check is
// unchanged, and outlier ejections, so that a reload neither sends traffic to an endpoint known
// to be down nor waits for thresholds to find out again. Before `next` is in use.
void inheritEndpointState(std::vector<ResolvedCluster>& next,
                          const std::vector<ResolvedCluster>& prev);

// Resolves every endpoint of every cluster (blocking; call at start and on reload) and builds
// each TLS cluster's client context. `workers`: how many workers will count LB picks. Throws
// std::runtime_error naming the cluster and endpoint that failed to resolve, or the TLS key whose
// file is bad (TlsClientContext).
std::vector<ResolvedCluster> resolveClusters(const config::Config& cfg, size_t workers);

}  // namespace sidetrace::upstream
