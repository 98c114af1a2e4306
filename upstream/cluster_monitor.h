#pragma once
// The work a generation's clusters need off the data path, on one thread per generation: active
// health checks (health_checker.h) and DNS refresh. DNS refresh re-resolves the clusters'
// endpoint names every dns_refresh_rate and brings the endpoint table (cluster.h) in line: new
// addresses are appended (and health-checked from then on, out of rotation until their first
// passing probe), addresses no longer returned are marked absent, ones that come back present
// again. A failed lookup changes nothing: the last answer stands, as in Envoy's strict DNS.

#include <boost/asio/ip/tcp.hpp>
#include <memory>
#include <thread>
#include <vector>

namespace sidetrace::upstream {

struct ResolvedCluster;

// Brings the cluster's endpoints for clusters[].endpoints[k] in line with `addrs`, its new DNS
// answer: unknown addresses appended (their indexes added to `fresh`), known ones present, the rest
// absent — unless none of the answer could be kept (the table is full), when the old ones stay.
// `warned_full`: the cluster's "table full" warning was logged. Monitor thread only.
void applyDnsAnswer(const ResolvedCluster& cluster, size_t k,
                    const std::vector<boost::asio::ip::tcp::endpoint>& addrs,
                    std::vector<size_t>& fresh, bool& warned_full);

class ClusterMonitor {
 public:
  // Starts the health checks and DNS refreshes `clusters` ask for; the clusters must outlive
  // this object.
  explicit ClusterMonitor(const std::vector<ResolvedCluster>& clusters);
  ~ClusterMonitor();  // stops everything and joins the thread
  ClusterMonitor(const ClusterMonitor&) = delete;
  ClusterMonitor& operator=(const ClusterMonitor&) = delete;

  // True when some cluster needs the monitor (health checks or DNS refresh).
  static bool needed(const std::vector<ResolvedCluster>& clusters);

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
  std::thread thread_;
};

}  // namespace sidetrace::upstream
