#include "upstream/health_checker.h"

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
  error_code ec;
  co_await socket.async_connect(ep.address, asio::redirect_error(use_awaitable, ec));
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
      const bool ok = co_await probe(hc, ep);
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
