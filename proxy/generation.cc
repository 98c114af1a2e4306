#include "proxy/generation.h"

#include <pthread.h>

#include <algorithm>
#include <condition_variable>
#include <deque>
#include <mutex>
#include <stdexcept>
#include <thread>

namespace sidetrace::proxy {

namespace {

// Deletes the generations handed to it, in order, on its own thread (see buildGeneration). A
// lock per retired generation, never per request.
class GenerationReaper {
 public:
  GenerationReaper() : thread_([this] { run(); }) {}
  ~GenerationReaper() { finish(); }
  // What is queued still goes, then the thread. Later retirements are deleted by the caller.
  void finish() {
    {
      std::lock_guard lock(mu_);
      if (stop_) {
        return;
      }
      stop_ = true;
    }
    cv_.notify_one();
    thread_.join();
  }
  void retire(const Generation* gen) {
    {
      std::lock_guard lock(mu_);
      if (!stop_) {
        queue_.push_back(gen);
        cv_.notify_one();
        return;
      }
    }
    delete gen;
  }

 private:
  void run() {
    pthread_setname_np(pthread_self(), "st-reaper");
    std::unique_lock lock(mu_);
    for (;;) {
      cv_.wait(lock, [this] { return stop_ || !queue_.empty(); });
      if (queue_.empty()) {
        return;  // stop_, and nothing left
      }
      const Generation* gen = queue_.front();
      queue_.pop_front();
      lock.unlock();
      delete gen;  // may wait on the monitor's DNS lookup: nobody else waits on this thread
      lock.lock();
    }
  }
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<const Generation*> queue_;
  bool stop_ = false;
  std::thread thread_;  // last: starts once the rest is constructed
};

GenerationReaper& reaper() {
  static GenerationReaper r;
  return r;
}

}  // namespace

void finishRetiredGenerations() {
  reaper().finish();
}

size_t StatsSlots::slotFor(std::map<std::string, size_t, std::less<>>& slots, std::string key,
                           size_t capacity, const char* what) {
  if (auto it = slots.find(key); it != slots.end()) {
    return it->second;
  }
  if (slots.size() >= capacity) {
    throw std::runtime_error(std::string("more than ") + std::to_string(capacity) + " " + what +
                             " since start (metric slots are allocated at start); restart to "
                             "apply this config");
  }
  size_t slot = slots.size();
  slots.emplace(std::move(key), slot);
  return slot;
}

size_t StatsSlots::route(std::string_view listener, std::string_view route) {
  std::string key(listener);
  key += std::string_view("\0r", 2);  // a NUL never occurs in a YAML name: keys cannot collide
  key += route;
  return slotFor(routes_, std::move(key), route_capacity_, "distinct routes");
}

size_t StatsSlots::noRoute(std::string_view listener) {
  std::string key(listener);
  key += std::string_view("\0n", 2);
  return slotFor(routes_, std::move(key), route_capacity_, "distinct routes");
}

size_t StatsSlots::cluster(std::string_view cluster) {
  return slotFor(clusters_, std::string(cluster), cluster_capacity_, "distinct clusters");
}

size_t workerCount(const config::Config& cfg) {
  return cfg.workers != 0 ? cfg.workers : std::max(1u, std::thread::hardware_concurrency());
}

std::shared_ptr<const Generation> buildGeneration(config::ConfigPtr cfg, StatsSlots& slots,
                                                  const Generation* prev) {
  reaper();  // started here, on the main thread, before any generation can be retired
  std::shared_ptr<Generation> gen(new Generation(),
                                  [](const Generation* g) { reaper().retire(g); });
  gen->clusters = upstream::resolveClusters(*cfg, workerCount(*cfg));
  if (prev != nullptr) {
    upstream::inheritEndpointState(gen->clusters, prev->clusters);
  }
  if (upstream::ClusterMonitor::needed(gen->clusters)) {
    gen->monitor = std::make_unique<upstream::ClusterMonitor>(gen->clusters);
  }
  gen->sampler = tracing::makeSampler(cfg->tracing.sampler.type, cfg->tracing.sampler.ratio);
  if (cfg->egress) {
    gen->inflight = prev != nullptr && prev->inflight
                        ? prev->inflight
                        : std::make_shared<filters::InflightRegistry>();
    for (const auto& rc : gen->clusters) {
      if (rc.cfg->egress) {
        gen->egress = std::make_unique<upstream::EgressDestinations>(rc);
      }
    }
  }
  for (const auto& c : cfg->clusters) {
    gen->cluster_slots.push_back(slots.cluster(c.name));
  }
  for (const auto& l : cfg->listeners) {
    std::vector<size_t> route_slots;
    std::vector<size_t> route_cluster;
    for (const auto& r : l.routes) {
      route_slots.push_back(slots.route(l.name, r.name));
      size_t idx = kNoCluster;
      for (size_t c = 0; c < cfg->clusters.size(); ++c) {
        if (cfg->clusters[c].name == r.cluster) {
          idx = c;
        }
      }
      route_cluster.push_back(idx);
    }
    route_slots.push_back(slots.noRoute(l.name));
    gen->route_slots.push_back(std::move(route_slots));
    gen->route_cluster.push_back(std::move(route_cluster));
  }
  gen->config = std::move(cfg);
  return gen;
}

}  // namespace sidetrace::proxy
