#include "upstream/health_checker.h"

#include <pthread.h>

#include <algorithm>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/read_until.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/streambuf.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>
#include <charconv>
#include <string>

#include <spdlog/spdlog.h>

#include "upstream/cluster.h"
#include "upstream/deadline.h"

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

bool EndpointHealth::anyHealthy() const {
  for (size_t i = 0; i < size_; ++i) {
    if (healthy(i)) {
      return true;
    }
  }
  return false;
}

namespace {

bool expectedStatus(const config::HealthCheck& hc, int status) {
  if (hc.expected_statuses.empty()) {
    return status >= 200 && status < 300;
  }
  return std::find(hc.expected_statuses.begin(), hc.expected_statuses.end(), status) !=
         hc.expected_statuses.end();
}

// "HTTP/1.1 200 OK" → 200; 0 when the line is not a status line.
int statusOf(std::string_view line) {
  if (!line.starts_with("HTTP/1.") || line.size() < 12 || line[8] != ' ') {
    return 0;
  }
  int status = 0;
  auto [end, ec] = std::from_chars(line.data() + 9, line.data() + 12, status);
  return ec == std::errc() && end == line.data() + 12 ? status : 0;
}

// One probe of one endpoint, within hc.timeout: true when it passed.
awaitable<bool> probe(const config::HealthCheck& hc, const Endpoint& ep) {
  auto ex = co_await asio::this_coro::executor;
  asio::ip::tcp::socket socket(ex);
  Deadline deadline(ex);
  deadline.watch(&socket);
  deadline.arm(hc.timeout);
  error_code ec = asio::error::host_not_found;
  for (const auto& addr : ep.addresses) {
    socket = asio::ip::tcp::socket(ex);
    co_await socket.async_connect(addr, asio::redirect_error(use_awaitable, ec));
    if (!ec || deadline.expired()) {
      break;
    }
  }
  if (ec || hc.type == "tcp") {
    co_return !ec;
  }
  const std::string request = "GET " + hc.path + " HTTP/1.1\r\nHost: " + ep.authority +
                              "\r\nUser-Agent: sidetrace-health-check\r\nConnection: close\r\n\r\n";
  co_await asio::async_write(socket, asio::buffer(request),
                             asio::redirect_error(use_awaitable, ec));
  if (ec) {
    co_return false;
  }
  asio::streambuf buf(64 * 1024);
  size_t n =
      co_await asio::async_read_until(socket, buf, "\r\n", asio::redirect_error(use_awaitable, ec));
  if (ec) {
    co_return false;
  }
  std::string_view line(static_cast<const char*>(buf.data().data()), n);
  co_return expectedStatus(hc, statusOf(line));
}

}  // namespace

struct HealthChecker::Impl {
  asio::io_context io{1};

  // Probes one endpoint forever (until the io_context stops), flipping its flag on thresholds.
  static awaitable<void> watch(const ResolvedCluster& cluster, size_t i) {
    const auto& hc = *cluster.cfg->health_check;
    const Endpoint& ep = cluster.endpoints[i];
    auto ex = co_await asio::this_coro::executor;
    asio::steady_timer timer(ex);
    uint32_t passes = 0;
    uint32_t failures = 0;
    for (;;) {
      const bool ok = co_await probe(hc, ep);
      EndpointHealth& health = *cluster.health;
      if (ok) {
        failures = 0;
        if (++passes >= hc.healthy_threshold && !health.healthy(i)) {
          health.set(i, true);
          spdlog::info("health check: {} endpoint {}:{} is healthy again", cluster.cfg->name,
                       ep.host, ep.port);
        }
      } else {
        passes = 0;
        if (++failures >= hc.unhealthy_threshold && health.healthy(i)) {
          health.set(i, false);
          spdlog::warn("health check: {} endpoint {}:{} is unhealthy ({} failed checks)",
                       cluster.cfg->name, ep.host, ep.port, failures);
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
};

HealthChecker::HealthChecker(const std::vector<ResolvedCluster>& clusters)
    : impl_(std::make_unique<Impl>()) {
  for (const auto& c : clusters) {
    if (!c.cfg->health_check || !c.health) {
      continue;
    }
    for (size_t i = 0; i < c.endpoints.size(); ++i) {
      asio::co_spawn(impl_->io, Impl::watch(c, i), asio::detached);
    }
  }
  thread_ = std::thread([this] {
    pthread_setname_np(pthread_self(), "st-health");
    impl_->io.run();
  });
}

HealthChecker::~HealthChecker() {
  impl_->io.stop();
  if (thread_.joinable()) {
    thread_.join();
  }
}

}  // namespace sidetrace::upstream
