#pragma once
// Client-side TLS towards one cluster: one SSL_CTX built with each generation (at start and on
// every reload, so a reload applies changed cluster TLS) and shared read-only by every worker,
// which only creates SSL objects from it. TLS 1.2 minimum, no compression, no renegotiation;
// ALPN offers h2 for http2 clusters and http/1.1 otherwise. The peer is verified against ca_file
// or the system store, with the name (or IP) that Endpoint::tls_name holds, unless
// insecure_skip_verify.
//
// Resumption: each worker keeps the newest session per endpoint (TlsSessionSlot, owned by the
// connection pool) and offers it on the next connection; OpenSSL's own client cache stays off
// because it is shared state across threads and keyed by nothing useful to us.

#include <openssl/ssl.h>

#include <boost/asio/ssl/context.hpp>
#include <memory>
#include <string>

#include "config/config.h"

namespace sidetrace::upstream {

struct Endpoint;

// The last resumable session one endpoint's server handed this worker. Single-threaded: written
// by OpenSSL's new-session callback during I/O on one of the pool's connections.
struct TlsSessionSlot {
  struct Free {
    void operator()(SSL_SESSION* s) const { SSL_SESSION_free(s); }
  };
  std::unique_ptr<SSL_SESSION, Free> session;
};

class TlsClientContext {
 public:
  // Reads the CA bundle and client certificate files. Throws std::runtime_error whose message
  // starts with the key (`<key_prefix>.ca_file`, `.cert`, `.key`) when a file is unreadable or not
  // PEM, or the key does not match the certificate. `key_prefix` is e.g. "clusters[0].tls";
  // `protocol` the cluster's (http1 | http2) and picks the ALPN offer. Warns (spdlog) when
  // insecure_skip_verify is set.
  TlsClientContext(const config::UpstreamTlsConfig& tls, const std::string& protocol,
                   const std::string& key_prefix);
  TlsClientContext(const TlsClientContext&) = delete;
  TlsClientContext& operator=(const TlsClientContext&) = delete;

  boost::asio::ssl::context& context() { return ctx_; }
  bool verifies() const { return verify_; }

  // Sets up a new connection's SSL before its handshake: SNI, the name or IP the certificate must
  // match, and the session to offer from `slot`, which also receives the sessions the server
  // issues on this connection. `slot` must outlive the SSL object.
  void prepare(SSL* ssl, const Endpoint& ep, TlsSessionSlot& slot) const;

 private:
  static int onNewSession(SSL* ssl, SSL_SESSION* session);
  boost::asio::ssl::context ctx_;
  bool verify_ = true;
};

}  // namespace sidetrace::upstream
