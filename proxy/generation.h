#pragma once
// A generation: what the workers derive from one config — resolved clusters, the sampler, and the
// metric slot of every route and cluster. The main thread builds one at start and one per reload
// (SIGHUP, POST /reload); it is immutable once published, but for what the monitor thread keeps
// current through atomics (the clusters' endpoint tables and health flags). A worker switches to a
// new generation between requests, and a request keeps the generation it started with, so the
// routes and clusters it points into stay alive until it is done: nothing in flight notices a
// reload.

#include <cstddef>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "config/config.h"
#include "filters/inflight_registry.h"
#include "tracing/sampler.h"
#include "upstream/cluster.h"
#include "upstream/cluster_monitor.h"
#include "upstream/egress_destinations.h"

namespace sidetrace::proxy {

inline constexpr auto kNoCluster = static_cast<size_t>(-1);

// Metric slots by name, so a counter keeps counting across reloads for the same listener/route or
// cluster (and a renamed route starts a new series, as Prometheus expects). Grow-only, bounded by
// the capacity the workers' counters were allocated with. Main thread only.
class StatsSlots {
 public:
  StatsSlots(size_t route_capacity, size_t cluster_capacity)
      : route_capacity_(route_capacity), cluster_capacity_(cluster_capacity) {}
  // Throws std::runtime_error when the capacity is exhausted (a reload then asks for a restart).
  size_t route(std::string_view listener, std::string_view route);
  size_t noRoute(std::string_view listener);  // requests of this listener that matched no route
  size_t cluster(std::string_view cluster);
  size_t routeCapacity() const { return route_capacity_; }
  size_t clusterCapacity() const { return cluster_capacity_; }

 private:
  size_t slotFor(std::map<std::string, size_t, std::less<>>& slots, std::string key,
                 size_t capacity, const char* what);
  size_t route_capacity_;
  size_t cluster_capacity_;
  std::map<std::string, size_t, std::less<>> routes_;
  std::map<std::string, size_t, std::less<>> clusters_;
};

struct Generation {
  config::ConfigPtr config;
  std::vector<upstream::ResolvedCluster> clusters;  // point into *config
  // Health checks and DNS refresh for the clusters while this generation lives (null: no cluster
  // needs either). Declared after `clusters`, which it reads and refreshes, so it stops first.
  std::unique_ptr<upstream::ClusterMonitor> monitor;
  std::shared_ptr<const tracing::Sampler> sampler;
  // With an egress listener: the inbound requests in flight at the app, one table for the process
  // that each generation hands to the next (a request in flight across a reload stays visible),
  // and the egress cluster's destinations (point into `clusters`). Null without one.
  std::shared_ptr<filters::InflightRegistry> inflight;
  std::unique_ptr<upstream::EgressDestinations> egress;
  // [listener][route] → metric slot; [listener][routes.size()] is the listener's no-route slot.
  std::vector<std::vector<size_t>> route_slots;
  std::vector<size_t> cluster_slots;               // [cluster] → metric slot
  std::vector<std::vector<size_t>> route_cluster;  // [listener][route] → cluster index | kNoCluster

  size_t routeSlot(size_t listener, size_t route) const { return route_slots[listener][route]; }
  size_t noRouteSlot(size_t listener) const { return route_slots[listener].back(); }
};

// Worker threads for this config: workers, or one per core when 0. Fixed for the process.
size_t workerCount(const config::Config& cfg);

// Resolves the clusters (blocking DNS) and assigns metric slots. Throws std::runtime_error with a
// message naming the cluster or the exhausted capacity.
// `prev` (on reload): the generation it replaces, whose endpoints' health and outlier state the
// new one starts from (inheritEndpointState).
//
// The generation is destroyed on a reaper thread of its own, wherever its last reference goes (a
// worker switching over, the last request on it, the main loop): destroying it stops its monitor,
// which waits for a DNS lookup in flight, for as long as the lookup hangs, and no event loop may
// wait for that. The reaper finishes what it was given before the process exits.
std::shared_ptr<const Generation> buildGeneration(config::ConfigPtr cfg, StatsSlots& slots,
                                                  const Generation* prev = nullptr);

// Deletes the retired generations still queued and stops the reaper thread; later retirements are
// deleted on the caller's thread. Called once the server has stopped, before main returns: joining
// the reaper (and through it the monitor threads) from a static destructor during exit() deadlocks
// when a monitor thread that used OpenSSL ends after OpenSSL's own exit handler ran.
void finishRetiredGenerations();

}  // namespace sidetrace::proxy
