#pragma once
// One request/response exchange, whatever the protocols on either side: run the filter chain, pick
// the cluster and endpoint, make the attempts (retries, circuit breakers, outlier reports), and
// stream both bodies at once (a bidirectional gRPC call needs the response flowing while the
// request still streams), with back-pressure both ways, a deadline (route timeout, or grpc-timeout
// when shorter), gRPC-aware failures (a trailers-only grpc-status instead of a bare 502 that
// clients misreport), the spans and the access log. Every protocol pair runs here; the policy is
// written once.
//
// Codecs plug in through two small interfaces: DownstreamSide (the request as the client sent it:
// an HTTP/2 stream, or an HTTP/1 connection's current request) and UpstreamCall (one attempt over
// an HTTP/1 pooled connection or an HTTP/2 multiplexed stream, upstream_call.h). Framing stays in
// the codecs: the HTTP/1 side writes a response head together with the first body bytes, and an
// HTTP/1 upgrade (101) ends in the side's tunnel.

#include <utility>  // before asio (DEPENDENCIES.md 1)

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/awaitable.hpp>
#include <cstdint>
#include <memory>
#include <optional>
#include <string_view>

#include "filters/stream.h"
#include "upstream/deadline.h"

namespace sidetrace::upstream {
struct UpstreamConnection;
}  // namespace sidetrace::upstream

namespace sidetrace::proxy {

class Worker;
struct WorkerGeneration;
class UpstreamCall;

// What of an exchange is worth keeping from one request to the next, kept by the side: the
// route's and the per-try deadlines (no timer set up per request) and the response head (its
// header vector keeps its capacity). An HTTP/1 connection reuses one from request to request
// (RequestState), an HTTP/2 stream has its own.
struct ExchangeStorage {
  explicit ExchangeStorage(const boost::asio::any_io_executor& ex) : route(ex), per_try(ex) {}
  upstream::Deadline route;
  upstream::Deadline per_try;
  filters::ResponseHead response;
};

// What crossed a tunnel and how it ended.
struct TunnelStats {
  uint64_t to_upstream = 0;    // bytes from the client delivered to the upstream
  uint64_t to_downstream = 0;  // bytes from the upstream delivered to the client
  // None: a side closed (the other then got its half-close); Reset: a read or write failed;
  // Timeout: no byte moved for limits.idle_timeout.
  filters::UpstreamResult::Error error = filters::UpstreamResult::Error::None;
};

// The downstream half of one exchange. Reads and sends complete in order; `false` means the
// stream is gone (client reset, connection lost) and the exchange should wind down.
class DownstreamSide {
 public:
  virtual ~DownstreamSide() = default;
  // The request body as buffered so far (possibly empty), waiting until there is some or the
  // request ended. `end` is set with the last bytes. The view stays valid until consumeBody().
  virtual boost::asio::awaitable<bool> readBody(std::string_view& data, bool& end) = 0;
  // The exchange is done with `n` bytes of what readBody() returned (flow control credit).
  virtual void consumeBody(size_t n) = 0;
  // Request trailers as received, once readBody() reported the end (null when none). What of
  // them may travel is decided where a trailer section is written (filters::allowedInTrailers).
  virtual const filters::HeaderMap* requestTrailers() = 0;
  // The whole request body has arrived (readBody() will not wait): it can be replayed.
  virtual bool bodyComplete() const = 0;
  // `end`: no body follows. Waits while the codec's send buffer is full (back-pressure).
  virtual boost::asio::awaitable<bool> sendHead(filters::ResponseHead& head, bool end) = 0;
  virtual boost::asio::awaitable<bool> sendBody(std::string_view data, bool end) = 0;
  // sendHead() / sendBody() without a coroutine when they need not wait (a head kept for the
  // first body bytes, a write the socket took whole): the result. nullopt: the caller must
  // co_await sendHead() / sendBody() with the same arguments, which finish what was begun.
  virtual std::optional<bool> sendHeadNow(filters::ResponseHead& head, bool end) {
    (void)head;
    (void)end;
    return std::nullopt;
  }
  virtual std::optional<bool> sendBodyNow(std::string_view data, bool end) {
    (void)data;
    (void)end;
    return std::nullopt;
  }
  // Ends the response with trailers (after a head sent with end=false).
  virtual boost::asio::awaitable<bool> sendTrailers(filters::HeaderMap& trailers) = 0;
  // Abort the response (RST_STREAM; for HTTP/1, close the connection).
  virtual void reset() = 0;
  // Wakes whatever the exchange awaits on this side; it then re-checks its state (deadline).
  virtual void interrupt() = 0;
  // The client left (reset the stream, lost the connection) or broke its own request: what the
  // attempt in flight ran into since says nothing about the endpoint, and nobody awaits a retry.
  virtual bool gone() const = 0;
  // The request broke its protocol after its head (an HTTP/1 body that does not parse): the status
  // to answer instead of the upstream's (400, 431), or 0.
  virtual int requestError() const { return 0; }
  virtual ExchangeStorage& storage() = 0;
  // After the upstream answered an upgrade request with 101: carry bytes both ways until either
  // side closes (HTTP/1 only; `upgrade` is never set on an HTTP/2 stream).
  virtual boost::asio::awaitable<void> tunnel(UpstreamCall& up);
  // Egress CONNECT, after the 200 went out: the same tunnel to `conn`, a fresh connection the
  // exchange owns, until either side closes (HTTP/1 only: the egress filter refuses CONNECT over
  // HTTP/2).
  virtual boost::asio::awaitable<TunnelStats> connectTunnel(upstream::UpstreamConnection& conn);

  // Set by the exchange while an attempt runs, so a client reset can cancel it.
  UpstreamCall* active_upstream = nullptr;
  // The request asks to switch protocols (HTTP/1 Upgrade): never retried, and sent to the cluster
  // over HTTP/1.1 whatever its protocol.
  bool upgrade = false;
};

// Runs one request that `down` carries (its head already in `stream.request`; `request_ended`
// when it has no body at all: none buffered, none to come). Fills `stream`'s outcome, ends the
// spans, counts and logs it.
boost::asio::awaitable<void> runExchange(Worker& worker, WorkerGeneration& gen,
                                         filters::Stream& stream, DownstreamSide& down,
                                         bool request_ended, uint64_t start_ns);

}  // namespace sidetrace::proxy
