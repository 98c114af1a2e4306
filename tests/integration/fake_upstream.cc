#include "tests/integration/fake_upstream.h"

#include <fcntl.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <poll.h>
#include <sys/socket.h>

#include <csignal>
#include <iterator>
#include <limits>

#include <boost/beast/core/error.hpp>
#include <boost/beast/http/parser.hpp>
#include <boost/beast/http/status.hpp>
#include <boost/beast/http/string_body.hpp>

namespace sidetrace::it {

namespace http = boost::beast::http;
using Clock = std::chrono::steady_clock;

std::optional<std::string> RecordedRequest::header(std::string_view name) const {
  for (const auto& [k, v] : headers) {
    if (iequals(k, name)) {
      return v;
    }
  }
  return std::nullopt;
}

size_t RecordedRequest::headerCount(std::string_view name) const {
  size_t n = 0;
  for (const auto& [k, v] : headers) {
    n += iequals(k, name) ? 1 : 0;
  }
  return n;
}

Behavior Behavior::fixed(int status, std::string body, Headers headers) {
  Behavior b;
  b.kind = Kind::Fixed;
  b.status = status;
  b.body = std::move(body);
  b.headers = std::move(headers);
  return b;
}

Behavior Behavior::chunked(std::string body, size_t chunks, Headers trailers) {
  Behavior b;
  b.kind = Kind::Chunked;
  b.body = std::move(body);
  b.chunks = chunks;
  b.trailers = std::move(trailers);
  return b;
}

Behavior Behavior::stall(std::chrono::milliseconds delay, int status) {
  Behavior b;
  b.kind = Kind::Stall;
  b.delay = delay;
  b.status = status;
  b.body = "late";
  return b;
}

Behavior Behavior::close() {
  Behavior b;
  b.kind = Kind::Close;
  return b;
}

Behavior Behavior::closeIdle(std::chrono::milliseconds idle, int status, std::string body) {
  Behavior b;
  b.kind = Kind::CloseIdle;
  b.delay = idle;
  b.status = status;
  b.body = std::move(body);
  return b;
}

Behavior Behavior::large(uint64_t bytes) {
  Behavior b;
  b.kind = Kind::Large;
  b.large_bytes = bytes;
  return b;
}

Behavior Behavior::upgrade() {
  Behavior b;
  b.kind = Kind::Upgrade;
  b.status = 101;
  return b;
}

Behavior Behavior::sink() {
  Behavior b;
  b.kind = Kind::Sink;
  return b;
}

Behavior Behavior::earlyReply(int status, std::string body) {
  Behavior b;
  b.kind = Kind::EarlyReply;
  b.status = status;
  b.body = std::move(body);
  return b;
}

struct FakeUpstream::TlsContext {
  SSL_CTX* ctx = nullptr;
  ~TlsContext() { SSL_CTX_free(ctx); }
};

namespace {

// What one TLS handshake carried; the ALPN callback fills in the offer.
struct HandshakeInfo {
  std::string sni;
  std::string alpn_offered;
  std::string alpn;
  std::string client_cn;
  bool resumed = false;
};

constexpr unsigned char kHttp11[] = {8, 'h', 't', 't', 'p', '/', '1', '.', '1'};

int selectAlpn(SSL* ssl, const unsigned char** out, unsigned char* outlen, const unsigned char* in,
               unsigned int inlen, void*) {
  auto* info = static_cast<HandshakeInfo*>(SSL_get_app_data(ssl));
  for (unsigned i = 0; i < inlen && i + 1 + in[i] <= inlen; i += 1u + in[i]) {
    info->alpn_offered += (info->alpn_offered.empty() ? "" : ",") +
                          std::string(reinterpret_cast<const char*>(in + i + 1), in[i]);
  }
  unsigned char* selected = nullptr;
  if (SSL_select_next_proto(&selected, outlen, kHttp11, sizeof kHttp11, in, inlen) !=
      OPENSSL_NPN_NEGOTIATED) {
    return SSL_TLSEXT_ERR_NOACK;  // this origin speaks HTTP/1.1 only
  }
  *out = selected;
  return SSL_TLSEXT_ERR_OK;
}

// One accepted connection, plain or TLS: the blocking reads and writes serve() needs. TLS runs
// on a blocking socket whose reads time out every 100 ms, so a stop() is noticed.
class FakeConn {
 public:
  explicit FakeConn(TcpSocket sock) : sock_(std::move(sock)) {}
  ~FakeConn() {
    if (ssl_ != nullptr) {
      if (clean_) {
        SSL_shutdown(ssl_);  // close_notify, so the client may resume the session later
      }
      SSL_free(ssl_);
      ERR_clear_error();
    }
  }
  FakeConn(const FakeConn&) = delete;
  FakeConn& operator=(const FakeConn&) = delete;

  bool handshake(SSL_CTX* ctx, const std::atomic<bool>& stopping, HandshakeInfo& info) {
    const int fd = sock_.fd();
    ::fcntl(fd, F_SETFL, ::fcntl(fd, F_GETFL) & ~O_NONBLOCK);
    timeval rcv{0, 100 * 1000};
    timeval snd{10, 0};
    ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &rcv, sizeof rcv);
    ::setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &snd, sizeof snd);
    ssl_ = SSL_new(ctx);
    SSL_set_fd(ssl_, fd);
    SSL_set_app_data(ssl_, &info);
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(5);
    for (;;) {
      const int rc = SSL_accept(ssl_);
      if (rc == 1) {
        break;
      }
      const int err = SSL_get_error(ssl_, rc);
      if ((err != SSL_ERROR_WANT_READ && err != SSL_ERROR_WANT_WRITE) || stopping ||
          std::chrono::steady_clock::now() > deadline) {
        ERR_clear_error();
        return false;
      }
    }
    if (const char* name = SSL_get_servername(ssl_, TLSEXT_NAMETYPE_host_name)) {
      info.sni = name;
    }
    const unsigned char* p = nullptr;
    unsigned len = 0;
    SSL_get0_alpn_selected(ssl_, &p, &len);
    if (p != nullptr) {
      info.alpn.assign(reinterpret_cast<const char*>(p), len);
    }
    if (X509* peer = SSL_get0_peer_certificate(ssl_)) {
      char cn[256] = {};
      X509_NAME_get_text_by_NID(X509_get_subject_name(peer), NID_commonName, cn, sizeof cn);
      info.client_cn = cn;
    }
    info.resumed = SSL_session_reused(ssl_) == 1;
    clean_ = true;
    return true;
  }

  bool sendAll(std::string_view data) {
    if (ssl_ == nullptr) {
      return sock_.sendAll(data);
    }
    if (data.empty()) {
      return true;
    }
    if (SSL_write(ssl_, data.data(), static_cast<int>(data.size())) !=
        static_cast<int>(data.size())) {
      clean_ = false;
      ERR_clear_error();
      return false;
    }
    return true;
  }

  TcpSocket::ReadResult recvSome(std::string& out, Millis timeout) {
    if (ssl_ == nullptr) {
      return sock_.recvSome(out, timeout);
    }
    if (SSL_pending(ssl_) == 0) {
      pollfd p{sock_.fd(), POLLIN, 0};
      const int rc = ::poll(&p, 1, static_cast<int>(timeout.count()));
      if (rc == 0) {
        return TcpSocket::ReadResult::Timeout;
      }
      if (rc < 0) {
        return TcpSocket::ReadResult::Error;
      }
    }
    char buf[16384];
    const int n = SSL_read(ssl_, buf, sizeof buf);
    if (n > 0) {
      out.append(buf, static_cast<size_t>(n));
      return TcpSocket::ReadResult::Data;
    }
    const int err = SSL_get_error(ssl_, n);
    ERR_clear_error();
    if (err == SSL_ERROR_WANT_READ || err == SSL_ERROR_WANT_WRITE) {
      return TcpSocket::ReadResult::Timeout;  // a partial record or a post-handshake message
    }
    clean_ = err == SSL_ERROR_ZERO_RETURN;
    return TcpSocket::ReadResult::Closed;
  }

 private:
  TcpSocket sock_;
  SSL* ssl_ = nullptr;
  bool clean_ = false;  // no TLS error so far: end with close_notify
};

}  // namespace

FakeUpstream::FakeUpstream() : FakeUpstream("127.0.0.1", 0) {}

FakeUpstream::FakeUpstream(const std::string& ipv4, uint16_t port) : ipv4_(ipv4) {
  if (!listener_.listen(port, ipv4.c_str())) {
    throw std::runtime_error("FakeUpstream: cannot listen on " + ipv4 + ":" + std::to_string(port));
  }
  port_ = listener_.port();
  acceptor_ = std::thread([this] { acceptLoop(); });
}

FakeUpstream::FakeUpstream(const FakeUpstreamTls& tls) : tls_(std::make_shared<TlsContext>()) {
  ::signal(SIGPIPE, SIG_IGN);  // SSL_write to a client that went away must not kill the test
  SSL_CTX* ctx = SSL_CTX_new(TLS_server_method());
  tls_->ctx = ctx;
  SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
  if (tls.max_version != 0) {
    SSL_CTX_set_max_proto_version(ctx, tls.max_version);
  }
  if (SSL_CTX_use_certificate_chain_file(ctx, tls.cert_file.c_str()) != 1 ||
      SSL_CTX_use_PrivateKey_file(ctx, tls.key_file.c_str(), SSL_FILETYPE_PEM) != 1) {
    throw std::runtime_error("FakeUpstream: cannot load " + tls.cert_file);
  }
  static const unsigned char kSid[] = "fake-upstream";
  SSL_CTX_set_session_id_context(ctx, kSid, sizeof kSid - 1);
  SSL_CTX_set_alpn_select_cb(ctx, selectAlpn, nullptr);
  if (!tls.client_ca.empty()) {
    if (SSL_CTX_load_verify_locations(ctx, tls.client_ca.c_str(), nullptr) != 1) {
      throw std::runtime_error("FakeUpstream: cannot load " + tls.client_ca);
    }
    SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT, nullptr);
  }
  if (!listener_.listen(0)) {
    throw std::runtime_error("FakeUpstream: cannot listen");
  }
  port_ = listener_.port();
  acceptor_ = std::thread([this] { acceptLoop(); });
}

FakeUpstream::~FakeUpstream() {
  stop();
}

void FakeUpstream::on(const std::string& path, Behavior b) {
  std::lock_guard lock(mu_);
  exact_[path] = std::move(b);
}

void FakeUpstream::onPrefix(const std::string& prefix, Behavior b) {
  std::lock_guard lock(mu_);
  prefixes_.emplace_back(prefix, std::move(b));
}

void FakeUpstream::setDefault(Behavior b) {
  std::lock_guard lock(mu_);
  default_ = std::move(b);
}

std::vector<RecordedRequest> FakeUpstream::requests() const {
  std::lock_guard lock(mu_);
  return requests_;
}

size_t FakeUpstream::requestCount() const {
  std::lock_guard lock(mu_);
  return requests_.size();
}

std::vector<RecordedRequest> FakeUpstream::waitForRequests(size_t n,
                                                           std::chrono::milliseconds timeout) {
  std::unique_lock lock(mu_);
  cv_.wait_for(lock, timeout, [&] { return requests_.size() >= n; });
  return requests_;
}

void FakeUpstream::stop() {
  if (stopping_.exchange(true)) {
    return;
  }
  if (acceptor_.joinable()) {
    acceptor_.join();
  }
  listener_.close();
  try {
    refused_.emplace(port_, ipv4_.c_str());
  } catch (const std::runtime_error&) {
    // Bound by someone in between (a test bringing the upstream back): nothing left to hold.
  }
  std::vector<std::thread> workers;
  {
    std::lock_guard lock(mu_);
    workers.swap(workers_);
  }
  for (auto& t : workers) {
    t.join();
  }
}

void FakeUpstream::acceptLoop() {
  uint64_t next_id = 1;
  while (!stopping_) {
    TcpSocket sock = listener_.accept(std::chrono::milliseconds(50));
    if (!sock.valid()) {
      continue;
    }
    ++connections_;
    std::lock_guard lock(mu_);
    workers_.emplace_back(
        [this, s = std::move(sock), id = next_id++]() mutable { serve(std::move(s), id); });
  }
}

Behavior FakeUpstream::behaviorFor(const std::string& target) const {
  std::string path = target.substr(0, target.find('?'));
  std::lock_guard lock(mu_);
  if (auto it = exact_.find(path); it != exact_.end()) {
    return it->second;
  }
  for (const auto& [prefix, b] : prefixes_) {
    if (path.rfind(prefix, 0) == 0) {
      return b;
    }
  }
  return default_;
}

bool FakeUpstream::sleepUnlessStopped(std::chrono::milliseconds d) {
  auto deadline = Clock::now() + d;
  while (Clock::now() < deadline) {
    if (stopping_) {
      return false;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  return !stopping_;
}

namespace {

std::string statusLine(int status) {
  auto reason = http::obsolete_reason(http::int_to_status(static_cast<unsigned>(status)));
  return "HTTP/1.1 " + std::to_string(status) + " " + std::string(reason) + "\r\n";
}

std::string fixedResponse(int status, const Headers& headers, const std::string& body,
                          bool keep_alive) {
  std::string out = statusLine(status);
  for (const auto& [k, v] : headers) {
    out += k + ": " + v + "\r\n";
  }
  out += "Content-Length: " + std::to_string(body.size()) + "\r\n";
  if (!keep_alive) {
    out += "Connection: close\r\n";
  }
  out += "\r\n";
  out += body;
  return out;
}

}  // namespace

void FakeUpstream::serve(TcpSocket sock, uint64_t id) {
  FakeConn conn(std::move(sock));
  HandshakeInfo tls;
  if (tls_ && !conn.handshake(tls_->ctx, stopping_, tls)) {
    ++tls_failures_;
    return;
  }
  std::string buf;
  while (!stopping_) {
    http::request_parser<http::string_body> parser;
    parser.body_limit(512ull * 1024 * 1024);
    parser.header_limit(1024 * 1024);
    parser.eager(true);
    bool sent_continue = false;
    // Sink: decided from the request line before the header is parsed (the body limit applies
    // when the header completes); the body is then counted and dropped after every put.
    bool sink_checked = false;
    bool sink = false;
    uint64_t sink_bytes = 0;
    // Beast adds trailer fields to the message's fields: those after the count taken at the last
    // chunk are the trailers.
    size_t head_fields = std::numeric_limits<size_t>::max();
    auto on_chunk = [&](std::uint64_t size, boost::beast::string_view, boost::beast::error_code&) {
      if (size == 0) {
        head_fields = static_cast<size_t>(std::distance(parser.get().begin(), parser.get().end()));
      }
    };
    parser.on_chunk_header(on_chunk);
    for (;;) {
      boost::beast::error_code ec;
      size_t n = 0;
      if (!sink_checked && !parser.is_header_done()) {
        if (auto eol = buf.find("\r\n"); eol != std::string::npos) {
          sink_checked = true;
          std::string line = buf.substr(0, eol);
          auto sp1 = line.find(' ');
          auto sp2 = sp1 == std::string::npos ? sp1 : line.find(' ', sp1 + 1);
          if (sp2 != std::string::npos &&
              behaviorFor(line.substr(sp1 + 1, sp2 - sp1 - 1)).kind == Behavior::Kind::Sink) {
            sink = true;
            parser.body_limit(std::numeric_limits<std::uint64_t>::max());
          }
        }
      }
      if (!buf.empty()) {
        n = parser.put(boost::asio::buffer(buf.data(), buf.size()), ec);
        buf.erase(0, n);
        if (sink) {
          sink_bytes += parser.get().body().size();
          parser.get().body().clear();
        }
        if (ec && ec != http::error::need_more) {
          conn.sendAll(fixedResponse(400, {}, "fake upstream: bad request\n", false));
          return;
        }
      }
      if (parser.is_header_done() && !parser.is_done()) {
        const Behavior early = behaviorFor(std::string(parser.get().target()));
        if (early.kind == Behavior::Kind::EarlyReply) {
          conn.sendAll(fixedResponse(early.status, early.headers, early.body, true));
          while (!stopping_) {
            const size_t before = buf.size();
            auto r = conn.recvSome(buf, std::chrono::milliseconds(100));
            bytes_received_ += buf.size() - before;
            buf.clear();
            if (r == TcpSocket::ReadResult::Closed || r == TcpSocket::ReadResult::Error) {
              break;
            }
          }
          return;
        }
      }
      if (parser.is_header_done() && !parser.is_done() && !sent_continue) {
        auto expect = parser.get()[http::field::expect];
        if (iequals(std::string_view(expect.data(), expect.size()), "100-continue")) {
          conn.sendAll("HTTP/1.1 100 Continue\r\n\r\n");
          sent_continue = true;
        }
      }
      if (parser.is_done()) {
        break;
      }
      if (!ec && n > 0 && !buf.empty()) {
        continue;
      }
      size_t before = buf.size();
      auto r = conn.recvSome(buf, std::chrono::milliseconds(100));
      bytes_received_ += buf.size() - before;
      if (r == TcpSocket::ReadResult::Closed || r == TcpSocket::ReadResult::Error) {
        return;
      }
      if (stopping_) {
        return;
      }
    }

    auto& msg = parser.get();
    RecordedRequest rec;
    rec.method = std::string(msg.method_string());
    rec.target = std::string(msg.target());
    rec.version = static_cast<int>(msg.version());
    size_t field_index = 0;
    for (const auto& f : msg) {
      (field_index++ < head_fields ? rec.headers : rec.trailers)
          .emplace_back(std::string(f.name_string()), std::string(f.value()));
    }
    rec.body = msg.body();
    rec.chunked = parser.chunked();
    rec.connection_id = id;
    rec.tls_sni = tls.sni;
    rec.tls_alpn_offered = tls.alpn_offered;
    rec.tls_alpn = tls.alpn;
    rec.tls_client_cn = tls.client_cn;
    rec.tls_resumed = tls.resumed;
    bool keep_alive = msg.keep_alive();
    Behavior b = behaviorFor(rec.target);
    Headers echo_headers = {{"x-echo-method", rec.method}, {"x-echo-target", rec.target}};
    std::string body = rec.body;
    {
      std::lock_guard lock(mu_);
      requests_.push_back(std::move(rec));
    }
    cv_.notify_all();

    switch (b.kind) {
      case Behavior::Kind::Echo: {
        echo_headers.emplace_back("Content-Type", "application/octet-stream");
        if (!conn.sendAll(fixedResponse(200, echo_headers, body, keep_alive))) {
          return;
        }
        break;
      }
      case Behavior::Kind::Stall:
        if (!sleepUnlessStopped(b.delay)) {
          return;
        }
        [[fallthrough]];
      case Behavior::Kind::EarlyReply:  // a request without a body: nothing to answer early
      case Behavior::Kind::Fixed:
        if (!conn.sendAll(fixedResponse(b.status, b.headers, b.body, keep_alive))) {
          return;
        }
        break;
      case Behavior::Kind::CloseIdle:
        if (!conn.sendAll(fixedResponse(b.status, b.headers, b.body, keep_alive))) {
          return;
        }
        if (buf.empty() && conn.recvSome(buf, b.delay) != TcpSocket::ReadResult::Data) {
          return;  // idle for `delay` (or gone): closed without a word
        }
        break;
      case Behavior::Kind::Chunked: {
        std::string out = statusLine(b.status);
        for (const auto& [k, v] : b.headers) {
          out += k + ": " + v + "\r\n";
        }
        out += "Transfer-Encoding: chunked\r\n\r\n";
        if (!conn.sendAll(out)) {
          return;
        }
        size_t piece = std::max<size_t>(1, (b.body.size() + b.chunks - 1) / b.chunks);
        for (size_t off = 0; off < b.body.size(); off += piece) {
          std::string chunk = b.body.substr(off, piece);
          char size_hex[32];
          std::snprintf(size_hex, sizeof size_hex, "%zx\r\n", chunk.size());
          // Separate writes with a pause so the proxy sees the body arrive in pieces.
          if (!conn.sendAll(std::string(size_hex) + chunk + "\r\n")) {
            return;
          }
          std::this_thread::sleep_for(std::chrono::milliseconds(5));
        }
        std::string last = "0\r\n";
        for (const auto& [k, v] : b.trailers) {
          last += k + ": " + v + "\r\n";
        }
        if (!conn.sendAll(last + "\r\n")) {
          return;
        }
        break;
      }
      case Behavior::Kind::Close:
        return;
      case Behavior::Kind::Sink: {
        std::string count = std::to_string(sink_bytes);
        if (!conn.sendAll(fixedResponse(200, {{"x-sink-bytes", count}}, count, keep_alive))) {
          return;
        }
        break;
      }
      case Behavior::Kind::Large: {
        std::string head = statusLine(200) + "Content-Type: application/octet-stream\r\n" +
                           "Content-Length: " + std::to_string(b.large_bytes) + "\r\n\r\n";
        if (!conn.sendAll(head)) {
          return;
        }
        std::string block;
        for (uint64_t off = 0; off < b.large_bytes;) {
          uint64_t len = std::min<uint64_t>(64 * 1024, b.large_bytes - off);
          block.resize(len);
          for (uint64_t i = 0; i < len; ++i) {
            block[i] = patternByte(off + i);
          }
          if (!conn.sendAll(block) || stopping_) {
            return;
          }
          off += len;
        }
        break;
      }
      case Behavior::Kind::Upgrade: {
        std::string out =
            "HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n";
        if (!conn.sendAll(out)) {
          return;
        }
        // Tunnel: echo every byte back until the peer closes.
        while (!stopping_) {
          if (!buf.empty()) {
            if (!conn.sendAll(buf)) {
              return;
            }
            buf.clear();
          }
          auto r = conn.recvSome(buf, std::chrono::milliseconds(100));
          if (r == TcpSocket::ReadResult::Closed || r == TcpSocket::ReadResult::Error) {
            return;
          }
        }
        return;
      }
    }
    if (!keep_alive) {
      return;
    }
  }
}

}  // namespace sidetrace::it
