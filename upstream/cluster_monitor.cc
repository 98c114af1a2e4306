#include "upstream/cluster_monitor.h"

#include <pthread.h>

#include <algorithm>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <string>

#include <spdlog/spdlog.h>

#include "upstream/cluster.h"
#include "upstream/health_checker.h"

namespace sidetrace::upstream {

namespace asio = boost::asio;
using asio::awaitable;
using asio::use_awaitable;
using boost::system::error_code;

namespace {

std::string joinLabels(const std::vector<std::string>& labels) {
  std::string out;
  for (const auto& l : labels) {
    out += out.empty() ? l : ", " + l;
  }
  return out;
}

}  // namespace

void applyDnsAnswer(const ResolvedCluster& cluster, size_t k,
                    const std::vector<asio::ip::tcp::endpoint>& addrs, std::vector<size_t>& fresh,
                    bool& warned_full) {
  EndpointTable& table = *cluster.endpoints;
  const auto& hp = cluster.cfg->endpoints[k];
  const size_t before = table.size();
  std::vector<bool> known(addrs.size(), false);
  for (size_t i = 0; i < before; ++i) {
    if (table[i].config_index == k) {
      if (auto it = std::find(addrs.begin(), addrs.end(), table[i].address); it != addrs.end()) {
        known[static_cast<size_t>(it - addrs.begin())] = true;
      }
    }
  }
  // New addresses first: whether any of the answer made it into the table decides below whether
  // the old ones may go.
  std::vector<std::string> added;
  for (size_t a = 0; a < addrs.size(); ++a) {
    if (known[a]) {
      continue;
    }
    Endpoint ep;
    ep.host = hp.host;
    ep.port = hp.port;
    ep.address = addrs[a];
    ep.weight = hp.weight;
    ep.config_index = k;
    nameEndpoint(ep, *cluster.cfg);
    const size_t next = table.size();
    if (next == table.capacity()) {
      if (!warned_full) {
        warned_full = true;
        spdlog::warn(
            "cluster '{}': {} distinct addresses seen since the last reload; new ones (such as {}) "
            "get no traffic until the next reload (SIGHUP or POST /reload)",
            cluster.cfg->name, table.capacity(), ep.label);
      }
      continue;
    }
    if (cluster.health) {
      cluster.health->set(next, false);  // before it is published: no traffic until it passes
    }
    added.push_back(ep.label);
    table.add(std::move(ep));
    fresh.push_back(next);
  }
  // Then presence. When none of the answer is in the table (it is full), the old addresses stay:
  // better a stale endpoint than none.
  const bool any_kept =
      !added.empty() || std::find(known.begin(), known.end(), true) != known.end();
  std::vector<std::string> removed;
  for (size_t i = 0; i < before; ++i) {
    const Endpoint& ep = table[i];
    if (ep.config_index != k) {
      continue;
    }
    const bool now = std::find(addrs.begin(), addrs.end(), ep.address) != addrs.end();
    if (table.present(i) == now || (!now && !any_kept)) {
      continue;
    }
    (now ? added : removed).push_back(ep.label);
    table.setPresent(i, now);
    if (!now && cluster.outliers) {
      cluster.outliers->clear(i);  // its ejection no longer counts against the cap
    }
  }
  if (!added.empty() || !removed.empty()) {
    spdlog::info("cluster '{}': {} now resolves to {} endpoint(s){}{}", cluster.cfg->name, hp.str(),
                 addrs.size(), added.empty() ? "" : "; added " + joinLabels(added),
                 removed.empty() ? "" : "; removed " + joinLabels(removed));
  }
}

struct ClusterMonitor::Impl {
  asio::io_context io{1};

  awaitable<void> refreshDns(const ResolvedCluster& cluster) {
    auto ex = co_await asio::this_coro::executor;
    asio::ip::tcp::resolver resolver(ex);
    asio::steady_timer timer(ex);
    bool warned_full = false;
    for (;;) {
      timer.expires_after(cluster.cfg->dns_refresh_rate);
      error_code ec;
      co_await timer.async_wait(asio::redirect_error(use_awaitable, ec));
      if (ec) {
        co_return;
      }
      for (size_t k = 0; k < cluster.cfg->endpoints.size(); ++k) {
        const auto& hp = cluster.cfg->endpoints[k];
        boost::asio::ip::make_address(hp.host, ec);
        if (!ec) {
          continue;  // an IP: nothing to refresh
        }
        auto results = co_await resolver.async_resolve(hp.host, std::to_string(hp.port),
                                                       asio::redirect_error(use_awaitable, ec));
        if (ec == asio::error::operation_aborted) {
          co_return;
        }
        auto addrs = ec ? std::vector<asio::ip::tcp::endpoint>{} : preferredAddresses(results);
        if (addrs.empty()) {
          spdlog::debug("cluster '{}': refreshing {} failed ({}); keeping its last addresses",
                        cluster.cfg->name, hp.str(), ec ? ec.message() : "no address");
          continue;
        }
        std::vector<size_t> fresh;
        applyDnsAnswer(cluster, k, addrs, fresh, warned_full);
        if (cluster.health) {
          for (size_t i : fresh) {
            asio::co_spawn(io, watchHealth(cluster, i, true), asio::detached);
          }
        }
      }
    }
  }
};

bool ClusterMonitor::needed(const std::vector<ResolvedCluster>& clusters) {
  return std::any_of(clusters.begin(), clusters.end(),
                     [](const auto& c) { return c.health != nullptr || c.refreshes_dns; });
}

ClusterMonitor::ClusterMonitor(const std::vector<ResolvedCluster>& clusters)
    : impl_(std::make_unique<Impl>()) {
  for (const auto& c : clusters) {
    if (c.health) {
      for (size_t i = 0, n = c.endpoints->size(); i < n; ++i) {
        asio::co_spawn(impl_->io, watchHealth(c, i, false), asio::detached);
      }
    }
    if (c.refreshes_dns) {
      asio::co_spawn(impl_->io, impl_->refreshDns(c), asio::detached);
    }
  }
  thread_ = std::thread([this] {
    pthread_setname_np(pthread_self(), "st-upstream");
    impl_->io.run();
  });
}

ClusterMonitor::~ClusterMonitor() {
  impl_->io.stop();
  if (thread_.joinable()) {
    thread_.join();
  }
}

}  // namespace sidetrace::upstream
