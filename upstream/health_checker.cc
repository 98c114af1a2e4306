#include "upstream/health_checker.h"

#include <boost/asio/redirect_error.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>

#include <spdlog/spdlog.h>

#include "upstream/cluster.h"
#include "upstream/health_probe.h"

namespace sidetrace::upstream {

namespace asio = boost::asio;
using asio::awaitable;
using asio::use_awaitable;
using boost::system::error_code;

EndpointHealth::EndpointHealth(size_t endpoints)
    : flags_(new std::atomic<bool>[endpoints]), size_(endpoints) {
  for (size_t i = 0; i < endpoints; ++i) {
    flags_[i].store(true, std::memory_order_relaxed);  // healthy until checks say otherwise
  }
}

awaitable<void> watchHealth(const ResolvedCluster& cluster, size_t i, bool fresh) {
  const auto& hc = *cluster.cfg->health_check;
  const Endpoint& ep = (*cluster.endpoints)[i];
  EndpointHealth& health = *cluster.health;
  auto ex = co_await asio::this_coro::executor;
  asio::steady_timer timer(ex);
  uint32_t passes = 0;
  uint32_t failures = 0;
  for (;;) {
    if (cluster.endpoints->present(i)) {
      const bool ok = co_await probeEndpoint(cluster, ep);
      if (ok) {
        failures = 0;
        if ((++passes >= hc.healthy_threshold || fresh) && !health.healthy(i)) {
          health.set(i, true);
          spdlog::info("health check: {} endpoint {} ({}) is {}", cluster.cfg->name, ep.label,
                       ep.host, fresh ? "healthy" : "healthy again");
        }
        fresh = false;
      } else {
        passes = 0;
        if (++failures >= hc.unhealthy_threshold && health.healthy(i)) {
          health.set(i, false);
          spdlog::warn("health check: {} endpoint {} ({}) is unhealthy ({} failed checks)",
                       cluster.cfg->name, ep.label, ep.host, failures);
        }
      }
    }
    timer.expires_after(hc.interval);
    error_code ec;
    co_await timer.async_wait(asio::redirect_error(use_awaitable, ec));
    if (ec) {
      co_return;
    }
  }
}

}  // namespace sidetrace::upstream
