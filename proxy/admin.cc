#include "proxy/admin.h"

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>

#include "proxy/flat_buffer.h"
#include "proxy/http1_codec.h"
#include "upstream/deadline.h"

namespace sidetrace::proxy {

namespace asio = boost::asio;
using asio::ip::tcp;

AdminServer::AdminServer(asio::io_context& io, const config::HostPort& address,
                         AdminHandler handler)
    : io_(io), acceptor_(io), accept_retry_(io), handler_(std::move(handler)) {
  tcp::endpoint ep(asio::ip::make_address(address.host), address.port);
  acceptor_.open(ep.protocol());
  acceptor_.set_option(tcp::acceptor::reuse_address(true));
  acceptor_.bind(ep);
  acceptor_.listen();
}

bool isLoopback(const asio::ip::address& a) {
  if (a.is_v6() && a.to_v6().is_v4_mapped()) {
    return asio::ip::make_address_v4(asio::ip::v4_mapped, a.to_v6()).is_loopback();
  }
  return a.is_loopback();
}

uint16_t AdminServer::port() const {
  return acceptor_.local_endpoint().port();
}

void AdminServer::start() {
  acceptLoop();
}

void AdminServer::stop() {
  boost::system::error_code ec;
  acceptor_.close(ec);
  accept_retry_.cancel();
}

void AdminServer::acceptLoop() {
  acceptor_.async_accept([this](boost::system::error_code ec, tcp::socket s) {
    if (ec == asio::error::operation_aborted || !acceptor_.is_open()) {
      return;  // closed
    }
    if (ec) {
      // Out of descriptors, most likely: the admin listener is how operators see that, so it
      // tries again shortly instead of giving up (or retrying at once, which spins).
      accept_retry_.expires_after(std::chrono::milliseconds(100));
      accept_retry_.async_wait([this](boost::system::error_code e) {
        if (!e) {
          acceptLoop();
        }
      });
      return;
    }
    asio::co_spawn(io_, serve(std::move(s)), asio::detached);
    acceptLoop();
  });
}

asio::awaitable<void> AdminServer::serve(tcp::socket s) {
  FlatBuffer buf(16 * 1024);
  Http1Parser parser(Http1Parser::Kind::Request, 16 * 1024);
  upstream::Deadline deadline(s.get_executor());
  deadline.watch(&s);
  boost::system::error_code ec;
  const tcp::endpoint peer = s.remote_endpoint(ec);
  const bool from_loopback = !ec && isLoopback(peer.address());
  for (;;) {
    deadline.arm(std::chrono::seconds(30));
    bool done = false;
    bool bad = false;
    while (!done) {
      if (buf.size() > 0) {
        FeedResult r = parser.feed(buf.data(), buf.size());
        buf.consume(r.consumed);
        if (r.error != ParseError::None) {
          bad = true;
          break;
        }
        done = r.message_complete;
        if (done) {
          break;
        }
      }
      size_t n =
          co_await s.async_read_some(buf.prepare(), asio::redirect_error(asio::use_awaitable, ec));
      if (ec) {
        co_return;
      }
      buf.commit(n);
    }
    deadline.disarm();
    AdminResponse resp = bad ? AdminResponse{400, "text/plain", "bad request\n"}
                             : handler_(parser.request(), from_loopback);
    bool keep = !bad && parser.keepAlive();
    std::string out = "HTTP/1.1 " + std::to_string(resp.status) + " " + reasonPhrase(resp.status) +
                      "\r\nContent-Type: " + resp.content_type +
                      "\r\nContent-Length: " + std::to_string(resp.body.size()) +
                      (keep ? "\r\n\r\n" : "\r\nConnection: close\r\n\r\n");
    if (parser.request().method != "HEAD") {
      out += resp.body;
    }
    co_await asio::async_write(s, asio::buffer(out), asio::redirect_error(asio::use_awaitable, ec));
    if (ec || !keep) {
      break;
    }
  }
  s.shutdown(tcp::socket::shutdown_both, ec);
}

}  // namespace sidetrace::proxy
