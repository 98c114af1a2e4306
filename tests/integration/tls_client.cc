#include "tests/integration/tls_client.h"

#include <fcntl.h>
#include <openssl/err.h>
#include <openssl/x509.h>
#include <signal.h>
#include <sys/socket.h>

#include <boost/beast/core/error.hpp>
#include <boost/beast/http/parser.hpp>
#include <boost/beast/http/string_body.hpp>

namespace sidetrace::it {

namespace http = boost::beast::http;

namespace {

std::string drainErrors() {
  std::string out;
  while (unsigned long e = ERR_get_error()) {
    char buf[256];
    ERR_error_string_n(e, buf, sizeof buf);
    out += (out.empty() ? "" : "; ") + std::string(buf);
  }
  return out;
}

void setBlockingWithTimeout(int fd, Millis timeout) {
  int flags = ::fcntl(fd, F_GETFL);
  ::fcntl(fd, F_SETFL, flags & ~O_NONBLOCK);
  timeval tv{};
  tv.tv_sec = static_cast<time_t>(timeout.count() / 1000);
  tv.tv_usec = static_cast<suseconds_t>((timeout.count() % 1000) * 1000);
  ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  ::setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
}

}  // namespace

TlsConnection::TlsConnection(uint16_t port, const TlsClientOptions& o) {
  ::signal(SIGPIPE, SIG_IGN);  // a write to a connection the server closed must not kill the test
  ERR_clear_error();
  if (!sock_.connect(port)) {
    error_ = "connect failed";
    return;
  }
  setBlockingWithTimeout(sock_.fd(), Millis(10000));
  ctx_ = SSL_CTX_new(TLS_client_method());
  if (o.max_version != 0) {
    SSL_CTX_set_security_level(ctx_, 0);
    SSL_CTX_set_cipher_list(ctx_, "ALL:@SECLEVEL=0");
    SSL_CTX_set_min_proto_version(ctx_, TLS1_VERSION);
    SSL_CTX_set_max_proto_version(ctx_, o.max_version);
  }
  if (!o.ca_file.empty()) {
    if (SSL_CTX_load_verify_locations(ctx_, o.ca_file.c_str(), nullptr) != 1) {
      fail("loading the CA file");
      return;
    }
    SSL_CTX_set_verify(ctx_, SSL_VERIFY_PEER, nullptr);
  }
  if (!o.cert_file.empty()) {
    if (SSL_CTX_use_certificate_chain_file(ctx_, o.cert_file.c_str()) != 1 ||
        SSL_CTX_use_PrivateKey_file(ctx_, o.key_file.c_str(), SSL_FILETYPE_PEM) != 1) {
      fail("loading the client certificate");
      return;
    }
  }
  if (o.alpn) {
    static const unsigned char kProtos[] = {2, 'h', '2', 8, 'h', 't', 't', 'p', '/', '1', '.', '1'};
    const unsigned char* protos = o.offer_h2 ? kProtos : kProtos + 3;  // skip "h2"
    SSL_CTX_set_alpn_protos(ctx_, protos, sizeof kProtos - (o.offer_h2 ? 0 : 3));
  }
  ssl_ = SSL_new(ctx_);
  SSL_set_fd(ssl_, sock_.fd());
  if (!o.sni.empty()) {
    SSL_set_tlsext_host_name(ssl_, o.sni.c_str());
  }
  if (o.resume) {
    SSL_set_session(ssl_, o.resume.get());
  }
  if (SSL_connect(ssl_) != 1) {
    fail("handshake");
    return;
  }
  handshake_ok_ = true;
}

TlsConnection::~TlsConnection() {
  if (ssl_ != nullptr) {
    if (handshake_ok_) {
      // close_notify first: freeing a connection that was not shut down marks its session as not
      // resumable, and tests resume sessions of connections they have closed.
      setBlockingWithTimeout(sock_.fd(), Millis(1000));
      SSL_shutdown(ssl_);
      ERR_clear_error();
    }
    SSL_free(ssl_);
  }
  if (ctx_ != nullptr) {
    SSL_CTX_free(ctx_);
  }
}

void TlsConnection::fail(const std::string& what) {
  std::string reasons = drainErrors();
  error_ = what + " failed" + (reasons.empty() ? "" : ": " + reasons);
}

bool TlsConnection::readSome(std::string& out) {
  char buf[16384];
  int n = SSL_read(ssl_, buf, sizeof buf);
  if (n <= 0) {
    fail("read");
    return false;
  }
  out.append(buf, static_cast<size_t>(n));
  return true;
}

std::optional<HttpResponse> TlsConnection::request(std::string_view method, std::string_view target,
                                                   const Headers& headers, Millis timeout) {
  if (!handshake_ok_) {
    return std::nullopt;
  }
  setBlockingWithTimeout(sock_.fd(), timeout);
  std::string req = buildRequest(method, target, headers);
  if (SSL_write(ssl_, req.data(), static_cast<int>(req.size())) != static_cast<int>(req.size())) {
    fail("write");
    return std::nullopt;
  }
  http::response_parser<http::string_body> parser;
  parser.eager(true);
  parser.skip(method == "HEAD");
  for (;;) {
    boost::beast::error_code ec;
    if (!buf_.empty()) {
      size_t n = parser.put(boost::asio::buffer(buf_.data(), buf_.size()), ec);
      buf_.erase(0, n);
      if (ec && ec != http::error::need_more) {
        error_ = "parse error: " + ec.message();
        return std::nullopt;
      }
      if (parser.is_done()) {
        break;
      }
      if (!ec && n > 0 && !buf_.empty()) {
        continue;
      }
    }
    if (!readSome(buf_)) {
      return std::nullopt;
    }
  }
  return toHttpResponse(parser);
}

bool TlsConnection::send(std::string_view bytes) {
  if (!handshake_ok_ || SSL_write(ssl_, bytes.data(), static_cast<int>(bytes.size())) !=
                            static_cast<int>(bytes.size())) {
    fail("write");
    return false;
  }
  return true;
}

bool TlsConnection::readUntil(std::string_view needle) {
  while (buf_.find(needle) == std::string::npos) {
    if (!handshake_ok_ || !readSome(buf_)) {
      return false;
    }
  }
  return true;
}

std::string TlsConnection::peerCommonName() const {
  if (ssl_ == nullptr) {
    return "";
  }
  X509* cert = SSL_get0_peer_certificate(ssl_);
  if (cert == nullptr) {
    return "";
  }
  char cn[256] = {};
  X509_NAME_get_text_by_NID(X509_get_subject_name(cert), NID_commonName, cn, sizeof cn);
  return cn;
}

std::string TlsConnection::alpn() const {
  const unsigned char* p = nullptr;
  unsigned int len = 0;
  if (ssl_ != nullptr) {
    SSL_get0_alpn_selected(ssl_, &p, &len);
  }
  return p == nullptr ? "" : std::string(reinterpret_cast<const char*>(p), len);
}

std::string TlsConnection::version() const {
  return ssl_ == nullptr ? "" : SSL_get_version(ssl_);
}

bool TlsConnection::sessionReused() const {
  return ssl_ != nullptr && SSL_session_reused(ssl_) == 1;
}

TlsSession TlsConnection::session() const {
  if (ssl_ == nullptr) {
    return nullptr;
  }
  SSL_SESSION* s = SSL_get1_session(ssl_);
  if (s == nullptr) {
    return nullptr;
  }
  TlsSession out(s, SSL_SESSION_free);
  return SSL_SESSION_is_resumable(s) == 1 ? out : nullptr;
}

bool TlsConnection::waitClosed(Millis timeout) {
  if (ssl_ == nullptr) {
    return sock_.waitClosed(timeout);
  }
  setBlockingWithTimeout(sock_.fd(), timeout);
  std::string sink;
  for (;;) {
    char buf[4096];
    int n = SSL_read(ssl_, buf, sizeof buf);
    if (n > 0) {
      continue;
    }
    int err = SSL_get_error(ssl_, n);
    ERR_clear_error();
    // Closed (close_notify, EOF, reset, alert) rather than timed out.
    return !(err == SSL_ERROR_SYSCALL && (errno == EAGAIN || errno == EWOULDBLOCK));
  }
}

}  // namespace sidetrace::it
