// UpstreamCall over a pooled HTTP/1.1 connection, for exchanges where the client spoke HTTP/2:
// the request is framed by its Content-Length or chunked, the response parsed by llhttp. A
// connection goes back to the pool only when both messages ended cleanly.

#include <boost/asio/redirect_error.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>
#include <charconv>

#include "proxy/flat_buffer.h"
#include "proxy/http1_codec.h"
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

class Http1Call final : public UpstreamCall {
 public:
  Http1Call(upstream::ConnectionPool& pool, const upstream::Endpoint& ep, bool head_request,
            uint32_t buffer_bytes, BufferPool& buffers)
      : pool_(pool),
        ep_(ep),
        buf_(buffer_bytes, &buffers),
        parser_(Http1Parser::Kind::Response, 1024 * 1024) {
    parser_.setNoBody(head_request);
  }

  ~Http1Call() override {
    if (conn_ && request_done_ && response_done_ && !cancelled_ && parser_.keepAlive() &&
        buf_.size() == 0) {
      pool_.release(std::move(conn_));
    }
  }

  awaitable<UpstreamError> start(filters::RequestHead& head, bool end_stream) override {
    auto& h = head.headers;
    h.remove("te");  // "TE: trailers" is an HTTP/2 (gRPC) end-to-end promise; hop-by-hop here
    // HTTP/2 clients may split Cookie into one field per cookie; HTTP/1 allows one line, and an
    // application reading only the first would lose the rest (RFC 9113 §8.2.3).
    h.fold("cookie", "; ");
    if (!h.get("content-length")) {
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
    conn_ = pool_.takeIdle(ep_);
    bool reused = conn_ != nullptr;
    for (int attempt = 0;; ++attempt) {
      if (cancelled_) {
        co_return UpstreamError::Reset;
      }
      if (!conn_) {
        upstream::ConnectError cerr;
        conn_ = co_await pool_.connect(ep_, cerr);
        reused = false;
        if (!conn_) {
          connect_error = cerr;
          co_return cerr == upstream::ConnectError::Timeout ? UpstreamError::Timeout
          : cerr == upstream::ConnectError::OverflowConnections ||
                  cerr == upstream::ConnectError::OverflowPending
              ? UpstreamError::Overflow
              : UpstreamError::ConnectFailure;
        }
      }
      peer_address = conn_->peer_address;
      error_code ec;
      co_await asio::async_write(*conn_, asio::buffer(out_),
                                 asio::redirect_error(use_awaitable, ec));
      if (!ec) {
        conn_->requests++;
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
        last_ = parser_.feed(buf_.data(), buf_.size());
        buf_.consume(last_.consumed);
        if (last_.error != ParseError::None) {
          co_return UpstreamError::ProtocolError;
        }
        if (last_.head_complete) {
          const int st = parser_.response().status;
          if (st >= 100 && st < 200) {
            continue;  // interim response: the next head follows (no upgrades here)
          }
          break;
        }
      }
      UpstreamError e = co_await readMore();
      if (e != UpstreamError::None) {
        co_return e;
      }
    }
    std::swap(head, parser_.response());
    head.headers.remove("content-length");
    if (auto len = parser_.contentLength(); len && head.status != 204 && head.status != 304) {
      head.headers.add("content-length", std::to_string(*len));
    }
    piece_ = 0;
    response_done_ = last_.message_complete && last_.body.empty();
    end = response_done_;
    co_return UpstreamError::None;
  }

  awaitable<UpstreamError> readBody(std::string_view& data, bool& end) override {
    for (;;) {
      if (piece_ < last_.body.size()) {
        data = last_.body[piece_++];
        end = last_.message_complete && piece_ == last_.body.size();
        response_done_ = end;
        co_return UpstreamError::None;
      }
      if (last_.message_complete) {
        data = {};
        end = response_done_ = true;
        co_return UpstreamError::None;
      }
      UpstreamError e = co_await readMore();
      if (e == UpstreamError::Reset && eof_ && parser_.bodyUntilEof() && parser_.finishOnEof()) {
        data = {};
        end = response_done_ = true;
        conn_.reset();  // closed by the peer: the body ended with it
        co_return UpstreamError::None;
      }
      if (e != UpstreamError::None) {
        co_return e;
      }
      last_ = parser_.feed(buf_.data(), buf_.size());
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
    trailers_out_ = forwardableTrailers(parser_.trailers());
    return trailers_out_.size() > 0 ? &trailers_out_ : nullptr;
  }

  void cancel() override {
    cancelled_ = true;
    if (conn_) {
      error_code ec;
      conn_->socket.cancel(ec);
    }
  }

  bool http2() const override { return false; }

 private:
  awaitable<bool> write(bool end) {
    error_code ec;
    if (!bufs_.empty()) {
      co_await asio::async_write(*conn_, bufs_, asio::redirect_error(use_awaitable, ec));
    }
    if (ec || cancelled_) {
      co_return false;
    }
    request_done_ = end;
    co_return true;
  }

  awaitable<UpstreamError> readMore() {
    if (cancelled_ || !conn_) {
      co_return UpstreamError::Reset;
    }
    error_code ec;
    size_t n =
        co_await conn_->async_read_some(buf_.prepare(), asio::redirect_error(use_awaitable, ec));
    if (ec) {
      eof_ = ec == asio::error::eof;
      co_return UpstreamError::Reset;
    }
    buf_.commit(n);
    co_return UpstreamError::None;
  }

  upstream::ConnectionPool& pool_;
  const upstream::Endpoint& ep_;
  std::unique_ptr<upstream::UpstreamConnection> conn_;
  FlatBuffer buf_;
  Http1Parser parser_;
  FeedResult last_;
  size_t piece_ = 0;
  std::string out_;
  std::string trailer_block_;
  mutable filters::HeaderMap trailers_out_;  // trailers(): what of the parsed ones may travel
  std::vector<asio::const_buffer> bufs_;
  char size_line_[24];
  bool chunked_ = false;
  bool request_done_ = false;
  bool response_done_ = false;
  bool cancelled_ = false;
  bool eof_ = false;
};

}  // namespace

std::unique_ptr<UpstreamCall> makeHttp1Call(upstream::ConnectionPool& pool,
                                            const upstream::Endpoint& ep, bool head_request,
                                            uint32_t buffer_bytes, BufferPool& buffers) {
  return std::make_unique<Http1Call>(pool, ep, head_request, buffer_bytes, buffers);
}

}  // namespace sidetrace::proxy
