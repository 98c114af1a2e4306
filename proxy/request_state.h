#pragma once
// What an HTTP/1 connection needs only while a request is in it: the request parser, the filter
// stream, the write scratch, the connection's and the route and per-try deadlines — about 2 KiB
// with the capacity their strings and vectors keep. A Session takes one from its worker's pool
// when a request's first bytes have arrived and gives it back when it goes idle with nothing
// buffered (after the short warm wait for a busy client's next request, session.cc), so an idle
// keep-alive connection holds none of it (a socket, its coroutine, its wait and its place on the
// worker's idle list), while a busy one reuses warm capacity instead of allocating per request.

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/buffer.hpp>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "config/config.h"
#include "filters/stream.h"
#include "proxy/exchange.h"
#include "proxy/http1_codec.h"
#include "upstream/deadline.h"

namespace sidetrace::proxy {

// What one write sends: an optional head, then the body pieces of one feed (as-is, or as one chunk
// when re-chunking), then the last chunk when the message ends (with `trailers` when there are
// some). Reused, so the data path does not allocate a buffer list per write.
struct Gather {
  std::vector<boost::asio::const_buffer> bufs;
  char size_line[24];
  std::string last_chunk;  // a last chunk that carries trailers
  uint64_t bytes = 0;      // body bytes in bufs
  void build(std::string_view head, std::span<const std::string_view> pieces, bool chunked,
             bool last, const filters::HeaderMap* trailers = nullptr);
};

struct RequestState {
  RequestState(const boost::asio::any_io_executor& ex, const config::Limits& limits);
  Http1Parser parser;  // the client's requests (pipelined ones too, while bytes are buffered)
  filters::Stream stream;
  Gather gather;
  std::string out;           // reused serialization buffer
  ExchangeStorage exchange;  // deadlines and response head for the exchange
  // The client connection's own timeouts while it is not idle: the TLS handshake, waiting for a
  // request's first byte after a wake-up, the header timeout, every response or local-reply
  // write, the TLS shutdown. Watches the taker's socket. (An idle connection is on its worker's
  // idle list instead: it holds no timer.)
  upstream::Deadline deadline;
  // A request has begun in it since it was taken from the pool: its stream must be reset before
  // the next one (the pool hands out reset states).
  bool used = false;
};

// One per worker. Keeps up to `max_free` states; past that, given-back ones are freed.
class RequestStatePool {
 public:
  explicit RequestStatePool(size_t max_free = 64) : max_free_(max_free) {}
  RequestStatePool(const RequestStatePool&) = delete;
  RequestStatePool& operator=(const RequestStatePool&) = delete;

  // A state in its start state, with the parser limits of `limits` (a reload may have changed them
  // since it was last used); new ones get timers on `ex` (the worker's).
  std::unique_ptr<RequestState> take(const boost::asio::any_io_executor& ex,
                                     const config::Limits& limits);
  // Back to the start state (spans and stale socket pointers dropped) and kept, or freed.
  void give(std::unique_ptr<RequestState> s);
  // The worker is stopping: free what is kept while the timers' io_context still exists, and free
  // whatever is given back from now on (sessions that io_context's destruction frees).
  void close();
  size_t freeCount() const { return free_.size(); }

 private:
  size_t max_free_;
  bool closed_ = false;
  std::vector<std::unique_ptr<RequestState>> free_;
};

}  // namespace sidetrace::proxy
