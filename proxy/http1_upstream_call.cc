// UpstreamCall over a pooled HTTP/1.1 connection: the request is framed by its Content-Length or
// chunked, the response parsed by llhttp. A connection goes back to the pool only when both
// messages ended cleanly. A head with a body to follow waits for the first body bytes and goes out
// in the same write (one system call, one TCP segment, as the client usually sent them).

#include <algorithm>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>
#include <charconv>

#include "proxy/flat_buffer.h"
#include "proxy/http1_codec.h"
#include "proxy/send_now.h"
#include "proxy/upstream_call.h"
#include "upstream/connection_pool.h"

namespace sidetrace::proxy {

namespace asio = boost::asio;
using asio::awaitable;
using asio::use_awaitable;
using boost::system::error_code;

namespace {

bool methodHasBody(std::string_view m) {
  return m == "POST" || m == "PUT" || m == "PATCH";
}

// RFC 9110 §9.2.2: a request the server may receive twice with the effect of once.
bool idempotent(std::string_view m) {
  return m == "GET" || m == "HEAD" || m == "OPTIONS" || m == "TRACE" || m == "PUT" || m == "DELETE";
}

// Every Content-Length field removed, then, when `len` is set, one added last in canonical form
// (llhttp framed the body by that length, and the next hop must read the same). In place when the
// head carries exactly one, already canonical (the usual case): the same head without a copy.
void replaceContentLength(filters::HeaderMap& h, std::optional<uint64_t> len) {
  char digits[24];
  std::string_view canonical;
  if (len) {
    auto [end, ec] = std::to_chars(digits, digits + sizeof digits, *len);
    (void)ec;
    canonical = std::string_view(digits, static_cast<size_t>(end - digits));
  }
  auto is_length = [](const filters::Header& f) {
    return filters::iequals(f.name, "content-length");
  };
  auto first = std::find_if(h.begin(), h.end(), is_length);
  if (len && first != h.end() && first->value == canonical &&
      std::find_if(first + 1, h.end(), is_length) == h.end()) {
    first->name.assign("content-length");
    std::rotate(first, first + 1, h.end());
    return;
  }
  h.eraseIf(is_length);
  if (len) {
    h.add("content-length", canonical);
  }
}

class Http1Call final : public UpstreamCall {
 public:
  Http1Call(Http1CallPool& home, BufferPool& buffers, uint32_t buffer_bytes)
      : home_(home),
        buf_(buffer_bytes, &buffers),
        parser_(Http1Parser::Kind::Response, 1024 * 1024) {}

  // A new attempt on this (new or kept) call.
  void begin(upstream::ConnectionPool& pool, const upstream::Endpoint& ep,
             const Http1CallOptions& options) {
    pool_ = &pool;
    ep_ = &ep;
    parser_.reset();
    parser_.setNoBody(options.head_request);
    buf_.setCapacity(options.buffer_bytes);
    upgrade_ = options.upgrade;
    upgraded_ = chunked_ = request_done_ = response_done_ = cancelled_ = eof_ = replay_ = false;
    head_pending_ = prepared_ = write_pending_ = false;
    last_.consumed = 0;  // the body list keeps its capacity
    last_.head_complete = last_.message_complete = last_.upgrade = false;
    last_.body.clear();
    last_.error = ParseError::None;
    piece_ = 0;
    peer_address.clear();
    hop_socket = nullptr;
    connect_error = upstream::ConnectError::None;
  }

  void recycle() override {
    if (conn_ && request_done_ && response_done_ && !cancelled_ && !upgraded_ &&
        parser_.keepAlive() && buf_.size() == 0) {
      pool_->release(std::move(conn_));
    }
    conn_.reset();
    buf_.consume(buf_.size());
    buf_.release();
    home_.give(this);
  }

  // Prepares the head; on a pooled plain connection it goes out at once (writeNow()) unless a
  // body is to follow it. nullopt when start() must finish: connect, write what the socket did
  // not take, or retry on a fresh connection after a failed write.
  std::optional<UpstreamError> startNow(filters::RequestHead& head, bool end_stream) override {
    prepare(head, end_stream);
    prepared_ = true;
    if (!conn_ || cancelled_ || conn_->tls) {
      return std::nullopt;  // send() connects, or writes through OpenSSL
    }
    useConnection();
    if (head_pending_) {
      return UpstreamError::None;  // out with the first body bytes
    }
    bufs_.clear();
    bufs_.emplace_back(out_.data(), out_.size());
    if (writeNow(pending_ec_) && !pending_ec_) {
      return UpstreamError::None;
    }
    write_pending_ = true;
    return std::nullopt;
  }

  // Not a coroutine itself (a frame less per request): prepares the head (unless startNow() did),
  // then send() or finishWrite() runs.
  awaitable<UpstreamError> start(filters::RequestHead& head, bool end_stream) override {
    if (!std::exchange(prepared_, false)) {
      prepare(head, end_stream);
    }
    if (std::exchange(write_pending_, false)) {
      return finishWrite(pending_ec_);
    }
    return send(conn_ != nullptr);
  }

  // After startNow() began the write on a pooled connection: the rest (unless it failed), then
  // what send() does when a write on a reused connection fails: once more on a fresh one.
  awaitable<UpstreamError> finishWrite(error_code ec) {
    if (!ec) {
      co_await asio::async_write(*conn_, bufs_, asio::redirect_error(use_awaitable, ec));
    }
    if (!ec) {
      co_return UpstreamError::None;
    }
    if (cancelled_) {
      co_return UpstreamError::Reset;
    }
    conn_.reset();
    co_return co_await send(false);
  }

  void prepare(filters::RequestHead& head, bool end_stream) {
    auto& h = head.headers;
    // One pass over the fields for the three rules below (by name length first: most fields are
    // none of them), instead of a walk each; most heads need none of their work.
    bool te = false;
    bool has_length = false;
    size_t cookies = 0;
    for (const filters::Header& f : h) {
      switch (f.name.size()) {
        case 2:
          te = te || filters::iequals(f.name, "te");
          break;
        case 6:
          cookies += filters::iequals(f.name, "cookie") ? 1 : 0;
          break;
        case 14:
          has_length = has_length || filters::iequals(f.name, "content-length");
          break;
        default:
          break;
      }
    }
    if (te) {
      h.remove("te");  // "TE: trailers" is an HTTP/2 (gRPC) end-to-end promise; hop-by-hop here
    }
    // HTTP/2 clients may split Cookie into one field per cookie; HTTP/1 allows one line, and an
    // application reading only the first would lose the rest (RFC 9113 §8.2.3).
    if (cookies > 1) {
      h.fold("cookie", "; ");
    }
    if (!has_length) {
      if (!end_stream) {
        h.add("Transfer-Encoding", "chunked");
        chunked_ = true;
      } else if (methodHasBody(head.method)) {
        h.add("Content-Length", "0");
      }
    }
    request_done_ = end_stream;
    out_.clear();
    appendRequestHead(out_, head);
    out_ += "\r\n";
    head_pending_ = !end_stream;
    // A request that may be sent twice takes a pooled connection without a peek at it; should
    // the peer have closed it meanwhile, readHead() sends the request again on a fresh one.
    const bool replayable = end_stream && idempotent(head.method);
    conn_ = pool_->takeIdle(*ep_, replayable ? upstream::ConnectionPool::IdleCheck::Lazily
                                             : upstream::ConnectionPool::IdleCheck::Always);
    replay_ = replayable && conn_ != nullptr;
  }

  // The connection this attempt's request goes out on, as the span and the egress rule see it.
  void useConnection() {
    peer_address = conn_->peer_address;
    conn_->requests++;
    if (hop_socket != nullptr) {
      noteHop();
    }
  }

  // Out with the request head (or, when a body follows, ready to go with its first bytes), on the
  // connection taken (`reused`) or a new one.
  awaitable<UpstreamError> send(bool reused) {
    for (int attempt = 0;; ++attempt) {
      if (cancelled_) {
        co_return UpstreamError::Reset;
      }
      if (!conn_) {
        upstream::ConnectError cerr;
        conn_ = co_await pool_->connect(*ep_, cerr);
        reused = false;
        if (!conn_) {
          connect_error = cerr;
          co_return connectFailure(cerr);
        }
      }
      useConnection();
      if (head_pending_) {
        co_return UpstreamError::None;  // out with the first body bytes
      }
      error_code ec;
      bufs_.clear();
      bufs_.emplace_back(out_.data(), out_.size());
      if (!writeNow(ec)) {
        co_await asio::async_write(*conn_, bufs_, asio::redirect_error(use_awaitable, ec));
      }
      if (!ec) {
        co_return UpstreamError::None;
      }
      // A reused connection the peer closed meanwhile: once more on a fresh one (no body yet).
      if (reused && attempt == 0 && !cancelled_) {
        conn_.reset();
        continue;
      }
      co_return UpstreamError::Reset;
    }
  }

  awaitable<bool> sendBody(std::string_view data, bool end) override {
    if (cancelled_ || !conn_) {
      co_return false;
    }
    bufs_.clear();
    takePendingHead();
    if (chunked_ && !data.empty()) {
      auto [e, ec] = std::to_chars(size_line_, size_line_ + 20, data.size(), 16);
      (void)ec;
      *e++ = '\r';
      *e++ = '\n';
      bufs_.emplace_back(size_line_, static_cast<size_t>(e - size_line_));
    }
    if (!data.empty()) {
      bufs_.emplace_back(data.data(), data.size());
    }
    if (chunked_ && !data.empty()) {
      bufs_.emplace_back("\r\n", 2);
    }
    if (chunked_ && end) {
      bufs_.emplace_back("0\r\n\r\n", 5);
    }
    co_return co_await write(end);
  }

  awaitable<bool> sendTrailers(const filters::HeaderMap& trailers) override {
    if (cancelled_ || !conn_) {
      co_return false;
    }
    bufs_.clear();
    takePendingHead();
    if (chunked_) {
      trailer_block_.clear();
      appendLastChunk(trailer_block_, trailers);
      bufs_.emplace_back(trailer_block_.data(), trailer_block_.size());
    }
    co_return co_await write(true);
  }

  awaitable<UpstreamError> readHead(filters::ResponseHead& head, bool& end) override {
    for (;;) {
      if (buf_.size() > 0) {
        parser_.feed(buf_.data(), buf_.size(), last_);
        buf_.consume(last_.consumed);
        if (last_.error != ParseError::None) {
          co_return UpstreamError::ProtocolError;
        }
        if (last_.head_complete) {
          const int st = parser_.response().status;
          if (st == 101 && upgrade_) {
            upgraded_ = true;  // the final response; what follows is the tunnel's
            break;
          }
          if (st >= 100 && st < 200) {
            continue;  // interim response: the next head follows
          }
          break;
        }
      }
      if (!canRead()) {
        co_return UpstreamError::Reset;
      }
      UpstreamError e = afterRead(co_await readSome());
      if (e != UpstreamError::None && std::exchange(replay_, false) && !cancelled_ &&
          !parser_.bytesSeen()) {
        // The reused connection was closed by the peer before it answered: once more, fresh.
        conn_.reset();
        e = co_await send(false);
      }
      if (e != UpstreamError::None) {
        co_return e;
      }
    }
    swap(head, parser_.response());
    const auto len = parser_.contentLength();
    replaceContentLength(head.headers,
                         head.status != 204 && head.status != 304 ? len : std::nullopt);
    piece_ = 0;
    response_done_ = upgraded_ || (last_.message_complete && last_.body.empty());
    end = response_done_;
    co_return UpstreamError::None;
  }

  std::optional<UpstreamError> readBodyNow(std::string_view& data, bool& end) override {
    if (piece_ < last_.body.size()) {
      data = last_.body[piece_++];
      end = last_.message_complete && piece_ == last_.body.size();
      response_done_ = end;
      return UpstreamError::None;
    }
    if (last_.message_complete) {
      data = {};
      end = response_done_ = true;
      return UpstreamError::None;
    }
    return std::nullopt;
  }

  awaitable<UpstreamError> readBody(std::string_view& data, bool& end) override {
    for (;;) {
      if (auto now = readBodyNow(data, end)) {
        co_return *now;
      }
      UpstreamError e = canRead() ? afterRead(co_await readSome()) : UpstreamError::Reset;
      if (e == UpstreamError::Reset && eof_ && parser_.bodyUntilEof() && parser_.finishOnEof()) {
        data = {};
        end = response_done_ = true;
        conn_.reset();  // closed by the peer: the body ended with it
        co_return UpstreamError::None;
      }
      if (e != UpstreamError::None) {
        co_return e;
      }
      parser_.feed(buf_.data(), buf_.size(), last_);
      buf_.consume(last_.consumed);
      piece_ = 0;
      if (last_.error != ParseError::None) {
        co_return UpstreamError::ProtocolError;
      }
    }
  }

  // A chunked response's trailers, once it ended (nullptr when it had none).
  const filters::HeaderMap* trailers() const override {
    if (!last_.message_complete || parser_.trailers().size() == 0) {
      return nullptr;
    }
    return &parser_.trailers();
  }

  void cancel() override {
    cancelled_ = true;
    if (conn_) {
      error_code ec;
      conn_->socket.cancel(ec);
    }
  }

  bool http2() const override { return false; }

  upstream::UpstreamConnection* upgraded(FlatBuffer*& pending) override {
    pending = &buf_;
    return upgraded_ && !cancelled_ ? conn_.get() : nullptr;
  }

 private:
  void takePendingHead() {
    if (head_pending_) {
      head_pending_ = false;
      bufs_.emplace_back(out_.data(), out_.size());
    }
  }

  // Sends bufs_ at once if the socket takes them whole (send_now.h): true when nothing is left
  // for an async_write (all sent, or `ec` set). TLS connections write through OpenSSL.
  bool writeNow(error_code& ec) {
    return !conn_->tls && sendNow(conn_->socket.native_handle(), bufs_, ec);
  }

  awaitable<bool> write(bool end) {
    error_code ec;
    if (!bufs_.empty() && !writeNow(ec)) {
      co_await asio::async_write(*conn_, bufs_, asio::redirect_error(use_awaitable, ec));
    }
    if (ec || cancelled_) {
      co_return false;
    }
    request_done_ = end;
    co_return true;
  }

  // The connection, as the app sees it, for the egress process rule. TLS hides the request's
  // bytes from the queues the rule reads: such a hop is opaque.
  void noteHop() {
    const auto& local = conn_->local;
    const auto& remote = ep_->address;
    if (conn_->tls || local.port() == 0 || local.address().is_v6() != remote.address().is_v6()) {
      hop_socket->setOpaque();
      return;
    }
    filters::TcpEndpoints app;
    app.v6 = remote.address().is_v6();
    if (app.v6) {
      const auto r = remote.address().to_v6().to_bytes();
      const auto l = local.address().to_v6().to_bytes();
      std::copy(r.begin(), r.end(), app.src.begin());
      std::copy(l.begin(), l.end(), app.dst.begin());
    } else {
      const auto r = remote.address().to_v4().to_bytes();
      const auto l = local.address().to_v4().to_bytes();
      std::copy(r.begin(), r.end(), app.src.begin());
      std::copy(l.begin(), l.end(), app.dst.begin());
    }
    app.sport = remote.port();
    app.dport = local.port();
    hop_socket->setKnown(app, conn_->bytes_read);
  }

  // More response bytes: `afterRead(co_await readSome())` once canRead(). Not a coroutine of its
  // own: on the path of every response, a frame per read would cost an allocation.
  bool canRead() const { return !cancelled_ && conn_; }
  awaitable<size_t> readSome() {
    return conn_->async_read_some(buf_.prepare(), asio::redirect_error(use_awaitable, read_ec_));
  }
  UpstreamError afterRead(size_t n) {
    if (read_ec_) {
      eof_ = read_ec_ == asio::error::eof;
      return UpstreamError::Reset;
    }
    buf_.commit(n);
    conn_->bytes_read += n;
    return UpstreamError::None;
  }

  Http1CallPool& home_;
  upstream::ConnectionPool* pool_ = nullptr;
  const upstream::Endpoint* ep_ = nullptr;
  std::unique_ptr<upstream::UpstreamConnection> conn_;
  FlatBuffer buf_;
  Http1Parser parser_;
  FeedResult last_;
  size_t piece_ = 0;
  std::string out_;
  std::string trailer_block_;
  std::vector<asio::const_buffer> bufs_;
  char size_line_[24];
  bool chunked_ = false;
  bool request_done_ = false;
  bool response_done_ = false;
  bool cancelled_ = false;
  bool eof_ = false;
  bool replay_ = false;  // on a reused connection not peeked at: may be sent again, fresh
  error_code read_ec_;
  bool head_pending_ = false;   // the head waits to go out with the first body bytes
  bool prepared_ = false;       // startNow() prepared the head; start() finishes
  bool write_pending_ = false;  // ... and began its write (the rest in bufs_, or pending_ec_)
  error_code pending_ec_;
  bool upgrade_ = false;
  bool upgraded_ = false;  // a 101 answered the upgrade: the connection is the tunnel's
};

}  // namespace

Http1CallPool::~Http1CallPool() {
  for (UpstreamCall* c : free_) {
    delete c;
  }
}

UpstreamCallPtr Http1CallPool::take(upstream::ConnectionPool& pool, const upstream::Endpoint& ep,
                                    const Http1CallOptions& options) {
  Http1Call* call;
  if (free_.empty()) {
    call = new Http1Call(*this, buffers_, options.buffer_bytes);
  } else {
    call = static_cast<Http1Call*>(free_.back());
    free_.pop_back();
  }
  call->begin(pool, ep, options);
  return UpstreamCallPtr(call);
}

void Http1CallPool::give(UpstreamCall* call) {
  if (free_.size() >= max_free_) {
    delete call;
    return;
  }
  free_.push_back(call);
}

}  // namespace sidetrace::proxy
