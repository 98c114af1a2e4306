#pragma once
// The admin listener (ARCHITECTURE §7): a tiny HTTP/1.1 server on the main thread's io_context.
// It answers with whatever the handler returns; the handler runs on the main thread, so it may read
// the workers' counters (atomics) but never touches a worker's data path.
//
// A sidecar binds it on 0.0.0.0 so kubelet can probe /ready and Prometheus can scrape /metrics,
// which also puts it in reach of every pod in the cluster. The handler therefore learns whether
// the peer is on loopback, and the control endpoints (/reload, /config_dump) and the trace view
// (/tracez: request data) answer only then.

#include <boost/asio/awaitable.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/steady_timer.hpp>
#include <functional>
#include <memory>
#include <string>

#include "config/config.h"
#include "filters/http_message.h"

namespace sidetrace::proxy {

struct AdminResponse {
  int status = 200;
  std::string content_type = "text/plain; charset=utf-8";
  std::string body;
};

// `from_loopback`: the peer address is 127.0.0.0/8 or ::1 (also IPv4-mapped).
using AdminHandler = std::function<AdminResponse(const filters::RequestHead&, bool from_loopback)>;

bool isLoopback(const boost::asio::ip::address& a);

class AdminServer {
 public:
  AdminServer(boost::asio::io_context& io, const config::HostPort& address, AdminHandler handler);
  void start();
  void stop();
  uint16_t port() const;

 private:
  boost::asio::awaitable<void> serve(boost::asio::ip::tcp::socket s);
  void acceptLoop();

  boost::asio::io_context& io_;
  boost::asio::ip::tcp::acceptor acceptor_;
  boost::asio::steady_timer accept_retry_;  // after a failed accept (e.g. out of descriptors)
  AdminHandler handler_;
};

}  // namespace sidetrace::proxy
