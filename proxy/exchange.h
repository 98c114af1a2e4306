#pragma once
// One request/response exchange, independent of the protocols on either side: run the filter
// chain, pick the cluster and endpoint, make one upstream attempt, and stream both bodies at once
// (a bidirectional gRPC call needs the response flowing while the request still streams), with
// back-pressure both ways, a deadline (route timeout, or grpc-timeout when shorter), and gRPC-aware
// failures (a trailers-only grpc-status instead of a bare 502 that clients misreport).
//
// Codecs plug in through two small interfaces: DownstreamSide (the request as the client sent it:
// an HTTP/2 stream, or an HTTP/1 connection's current request) and UpstreamCall (one attempt over
// an HTTP/1 pooled connection or an HTTP/2 multiplexed stream). The HTTP/1 → HTTP/1 path keeps its
// own tighter loop in session.cc; every exchange with HTTP/2 on either side runs here.

#include <utility>  // before asio (DEPENDENCIES.md 1)

#include <boost/asio/awaitable.hpp>
#include <cstdint>
#include <memory>
#include <string_view>

#include "filters/stream.h"

namespace sidetrace::proxy {

class Worker;
struct WorkerGeneration;
class UpstreamCall;

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
  // Request trailers, once readBody() reported the end (null when none).
  virtual const filters::HeaderMap* requestTrailers() = 0;
  // The whole request body has arrived (readBody() will not wait): it can be replayed.
  virtual bool bodyComplete() const = 0;
  // `end`: no body follows. Waits while the codec's send buffer is full (back-pressure).
  virtual boost::asio::awaitable<bool> sendHead(filters::ResponseHead& head, bool end) = 0;
  virtual boost::asio::awaitable<bool> sendBody(std::string_view data, bool end) = 0;
  // Ends the response with trailers (after a head sent with end=false).
  virtual boost::asio::awaitable<bool> sendTrailers(filters::HeaderMap& trailers) = 0;
  // Abort the response (RST_STREAM; for HTTP/1, close the connection).
  virtual void reset() = 0;
  // Wakes whatever the exchange awaits on this side; it then re-checks its state (deadline).
  virtual void interrupt() = 0;
  // The client left (reset the stream, lost the connection) or broke its own request: what the
  // attempt in flight ran into since says nothing about the endpoint, and nobody awaits a retry.
  virtual bool gone() const = 0;

  // Set by the exchange while an attempt runs, so a client reset can cancel it.
  UpstreamCall* active_upstream = nullptr;
};

// Runs one request that `down` carries (its head already in `stream.request`; `request_ended`
// when it has no body at all: none buffered, none to come). Fills `stream`'s outcome, ends the
// spans, counts and logs it.
boost::asio::awaitable<void> runExchange(Worker& worker, WorkerGeneration& gen,
                                         filters::Stream& stream, DownstreamSide& down,
                                         bool request_ended, uint64_t start_ns);

// The part of runExchange after the request filters passed (s.route is set): for a codec that ran
// them itself (the HTTP/1 session, which forwards to http2 clusters through here).
boost::asio::awaitable<void> forwardUpstream(Worker& worker, WorkerGeneration& gen,
                                             filters::Stream& stream, DownstreamSide& down,
                                             bool request_ended, uint64_t start_ns);

// Counts, access-logs and debug-logs a finished request (both exchange loops end here).
void finishRequest(Worker& worker, WorkerGeneration& gen, filters::Stream& stream,
                   uint64_t start_ns);

}  // namespace sidetrace::proxy
