#include "proxy/otlp_http_client.h"

#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <spdlog/spdlog.h>

#include <array>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/connect.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/ssl/context.hpp>
#include <boost/asio/ssl/host_name_verification.hpp>
#include <boost/asio/ssl/stream.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>
#include <stdexcept>

#include "config/url.h"
#include "proxy/http1_codec.h"

namespace sidetrace::proxy {

namespace {

namespace asio = boost::asio;
using asio::use_awaitable;
using asio::ip::tcp;
using SteadyClock = std::chrono::steady_clock;

constexpr uint32_t kMaxResponseHeadBytes = 64 * 1024;
// An OTLP response is a few bytes (a partial success at most); keep no more than this of a body.
constexpr size_t kMaxResponseBodyBytes = 1 << 20;

bool isIpLiteral(const std::string& host) {
  boost::system::error_code ec;
  asio::ip::make_address(host, ec);
  return !ec;
}

class OtlpHttpClient final : public tracing::HttpTransport {
 public:
  explicit OtlpHttpClient(const config::ExporterConfig& cfg)
      : url_(config::parseHttpUrl(cfg.endpoint)),
        resolver_(io_),
        parser_(Http1Parser::Kind::Response, kMaxResponseHeadBytes) {
    if (!url_.tls) {
      return;
    }
    ssl_ = std::make_unique<asio::ssl::context>(asio::ssl::context::tls_client);
    SSL_CTX_set_min_proto_version(ssl_->native_handle(), TLS1_2_VERSION);
    ssl_->set_options(asio::ssl::context::no_compression);
    verify_ = !cfg.tls.insecure_skip_verify;
    boost::system::error_code ec;
    if (!verify_) {
      ssl_->set_verify_mode(asio::ssl::verify_none);
      spdlog::warn(
          "tracing.exporter.tls.insecure_skip_verify: the collector's certificate is not "
          "verified; anyone on the path can read and forge the exported spans");
    } else if (!cfg.tls.ca_file.empty()) {
      ssl_->set_verify_mode(asio::ssl::verify_peer);
      ssl_->load_verify_file(cfg.tls.ca_file, ec);
      if (ec) {
        throw std::runtime_error("tracing.exporter.tls.ca_file: cannot load " + cfg.tls.ca_file +
                                 ": " + ec.message());
      }
    } else {
      ssl_->set_verify_mode(asio::ssl::verify_peer);
      ssl_->set_default_verify_paths(ec);
      if (ec) {
        throw std::runtime_error("cannot load the system CA store: " + ec.message());
      }
    }
  }

  ~OtlpHttpClient() override { close(); }

  tracing::HttpExchangeResult post(const tracing::HttpHeaders& headers, std::string_view body,
                                   SteadyClock::time_point deadline) override {
    tracing::HttpExchangeResult result;
    if (SteadyClock::now() >= deadline) {
      result.error = "timed out before sending";
      return result;
    }
    timed_out_ = false;
    bool done = false;
    io_.restart();
    asio::steady_timer timer(io_);
    timer.expires_at(deadline);
    timer.async_wait([this, &done](const boost::system::error_code& ec) {
      if (ec || done) {
        return;
      }
      // Aborts whatever is pending: resolve, connect, handshake, write or read.
      timed_out_ = true;
      resolver_.cancel();
      if (conn_) {
        boost::system::error_code ignored;
        conn_->socket().close(ignored);
      }
    });
    asio::co_spawn(io_, exchange(headers, body, result), [&](std::exception_ptr e) {
      done = true;
      timer.cancel();
      if (e) {
        try {
          std::rethrow_exception(e);
        } catch (const std::exception& ex) {
          result.status = 0;
          result.error = ex.what();
        } catch (...) {
          result.status = 0;
          result.error = "unknown error";
        }
      }
    });
    io_.run();
    if (result.status == 0) {
      close();  // a failed exchange leaves the connection in an unknown state
      if (timed_out_) {
        result.error = "timed out (" + result.error + ")";
      }
    }
    return result;
  }

  void close() override {
    if (conn_) {
      boost::system::error_code ignored;
      conn_->socket().close(ignored);
      conn_.reset();
    }
  }

 private:
  // One connection: a TCP socket, with a TLS stream over it for https.
  struct Connection {
    Connection(asio::io_context& io, asio::ssl::context* ssl) {
      if (ssl != nullptr) {
        tls = std::make_unique<asio::ssl::stream<tcp::socket>>(io, *ssl);
      } else {
        plain = std::make_unique<tcp::socket>(io);
      }
    }
    tcp::socket& socket() { return tls ? tls->next_layer() : *plain; }

    std::unique_ptr<asio::ssl::stream<tcp::socket>> tls;
    std::unique_ptr<tcp::socket> plain;
  };

  asio::awaitable<void> exchange(const tracing::HttpHeaders& headers, std::string_view body,
                                 tracing::HttpExchangeResult& result) {
    // A kept-alive connection may have been closed by the collector while idle; that shows as an
    // error before any response byte. Then the request is sent once more on a fresh connection.
    bool reused = conn_ != nullptr;
    while (true) {
      if (!conn_ && !co_await connect(result)) {
        co_return;
      }
      bool response_started = false;
      co_await roundTrip(headers, body, result, response_started);
      if (result.status != 0 || !reused || response_started || timed_out_) {
        co_return;
      }
      close();
      reused = false;
      result = {};
    }
  }

  asio::awaitable<bool> connect(tracing::HttpExchangeResult& result) {
    boost::system::error_code ec;
    auto endpoints = co_await resolver_.async_resolve(url_.host, std::to_string(url_.port),
                                                      asio::redirect_error(use_awaitable, ec));
    if (ec) {
      result.error = "cannot resolve " + url_.host + ": " + ec.message();
      co_return false;
    }
    conn_ = std::make_unique<Connection>(io_, ssl_.get());
    co_await asio::async_connect(conn_->socket(), endpoints,
                                 asio::redirect_error(use_awaitable, ec));
    if (ec) {
      result.error = "cannot connect to " + url_.authority() + ": " + ec.message();
      conn_.reset();
      co_return false;
    }
    conn_->socket().set_option(tcp::no_delay(true), ec);
    if (conn_->tls) {
      SSL* ssl = conn_->tls->native_handle();
      if (!isIpLiteral(url_.host)) {
        SSL_set_tlsext_host_name(ssl, url_.host.c_str());  // SNI (RFC 6066: names only)
      }
      if (verify_) {
        conn_->tls->set_verify_callback(asio::ssl::host_name_verification(url_.host));
      }
      co_await conn_->tls->async_handshake(asio::ssl::stream_base::client,
                                           asio::redirect_error(use_awaitable, ec));
      if (ec) {
        result.error = "TLS handshake with " + url_.authority() + " failed: " + ec.message();
        long verify = SSL_get_verify_result(ssl);
        if (verify != X509_V_OK) {
          result.error += std::string(" (") + X509_verify_cert_error_string(verify) + ")";
        }
        conn_.reset();
        co_return false;
      }
    }
    co_return true;
  }

  template <typename Buffers>
  asio::awaitable<size_t> write(const Buffers& buffers, boost::system::error_code& ec) {
    if (conn_->tls) {
      co_return co_await asio::async_write(*conn_->tls, buffers,
                                           asio::redirect_error(use_awaitable, ec));
    }
    co_return co_await asio::async_write(*conn_->plain, buffers,
                                         asio::redirect_error(use_awaitable, ec));
  }

  asio::awaitable<size_t> readSome(boost::system::error_code& ec) {
    in_.resize(16 * 1024);
    size_t n = 0;
    if (conn_->tls) {
      n = co_await conn_->tls->async_read_some(asio::buffer(in_),
                                               asio::redirect_error(use_awaitable, ec));
    } else {
      n = co_await conn_->plain->async_read_some(asio::buffer(in_),
                                                 asio::redirect_error(use_awaitable, ec));
    }
    in_.resize(n);
    co_return n;
  }

  asio::awaitable<void> roundTrip(const tracing::HttpHeaders& headers, std::string_view body,
                                  tracing::HttpExchangeResult& result, bool& response_started) {
    filters::RequestHead head;
    head.method = "POST";
    head.target = url_.target;
    head.headers.add("Host", url_.authority());
    for (const auto& [name, value] : headers) {
      head.headers.add(name, value);
    }
    head.headers.add("Content-Length", std::to_string(body.size()));
    out_.clear();
    appendRequestHead(out_, head);
    out_ += "\r\n";
    boost::system::error_code ec;
    std::array<asio::const_buffer, 2> buffers{asio::buffer(out_), asio::buffer(body)};
    co_await write(buffers, ec);
    if (ec) {
      result.error = "cannot send to " + url_.authority() + ": " + ec.message();
      co_return;
    }

    parser_.reset();
    result.body.clear();
    bool eof = false;
    while (true) {
      co_await readSome(ec);
      if (ec == asio::error::eof || ec == asio::ssl::error::stream_truncated) {
        eof = true;
      } else if (ec) {
        result.error = "cannot read the response from " + url_.authority() + ": " + ec.message();
        co_return;
      }
      if (eof) {
        if (parser_.inMessage() && parser_.bodyUntilEof() && parser_.finishOnEof()) {
          break;  // a response delimited by the connection's close
        }
        result.error =
            std::string("connection closed by ") + url_.authority() +
            (response_started ? " in the middle of the response" : " without a response");
        co_return;
      }
      response_started = true;
      std::string_view input(in_);
      bool complete = false;
      while (!input.empty() && !complete) {
        FeedResult fr = parser_.feed(input.data(), input.size());
        if (fr.error != ParseError::None) {
          result.error = "bad response from " + url_.authority() + ": " + fr.error_reason;
          co_return;
        }
        for (std::string_view piece : fr.body) {
          size_t room = kMaxResponseBodyBytes - result.body.size();
          result.body.append(piece.substr(0, room));
        }
        input.remove_prefix(fr.consumed);
        if (fr.message_complete) {
          int status = parser_.response().status;
          if (status >= 100 && status < 200) {
            result.body.clear();  // an interim response (100 Continue); the real one follows
            continue;
          }
          complete = true;
        }
        if (fr.consumed == 0 && !fr.message_complete) {
          break;  // needs more input
        }
      }
      if (complete) {
        break;
      }
    }
    const auto& response = parser_.response();
    result.status = response.status;
    result.retry_after = std::string(response.headers.get("retry-after").value_or(""));
    result.content_type = std::string(response.headers.get("content-type").value_or(""));
    if (eof || !parser_.keepAlive()) {
      close();
    }
  }

  config::HttpUrl url_;
  asio::io_context io_;  // run only inside post(), on the export thread
  tcp::resolver resolver_;
  std::unique_ptr<asio::ssl::context> ssl_;  // https only
  bool verify_ = true;
  std::unique_ptr<Connection> conn_;  // the kept-alive connection, if any
  Http1Parser parser_;
  std::string out_;  // request head, capacity reused
  std::string in_;   // read buffer
  bool timed_out_ = false;
};

}  // namespace

std::unique_ptr<tracing::HttpTransport> makeOtlpHttpTransport(const config::ExporterConfig& cfg) {
  return std::make_unique<OtlpHttpClient>(cfg);
}

}  // namespace sidetrace::proxy
