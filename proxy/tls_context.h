#pragma once
// Server-side TLS for one downstream listener, built once at start (listeners' TLS settings are
// restart-only). Modern defaults: TLS 1.2 minimum, ECDHE + AEAD ciphers for TLS 1.2 (OpenSSL's
// defaults for 1.3), server cipher preference, no compression, no renegotiation. ALPN offers
// http/1.1 only until the HTTP/2 codec exists (then h2 joins). Sessions resume through OpenSSL's
// server session cache and session tickets (one cache per listener, shared by every worker).
//
// Several certificates: one SSL_CTX each; the SNI callback on the first (the default) switches a
// connection to the first certificate whose SAN/CN matches the requested name. With client_ca set,
// client certificates are asked for and verified against it (mTLS).

#include <boost/asio/ssl/context.hpp>
#include <memory>
#include <string>
#include <vector>

#include "config/config.h"

namespace sidetrace::proxy {

class TlsServerContext {
 public:
  // Reads every certificate, key and CA file. Throws std::runtime_error whose message starts with
  // the key (`<key_prefix>.cert`, `.key`, `.certificates[i].cert`, `.client_ca`) when a file is
  // unreadable or not PEM, or a key does not match its certificate. `key_prefix` is e.g.
  // "listeners[0].tls"; it also names the session cache (session id context).
  TlsServerContext(const config::TlsConfig& tls, const std::string& key_prefix);
  TlsServerContext(const TlsServerContext&) = delete;
  TlsServerContext& operator=(const TlsServerContext&) = delete;

  // The context new connections start on (the default certificate). Thread-safe to share: workers
  // only create SSL objects from it.
  boost::asio::ssl::context& context() { return *contexts_.front(); }

 private:
  static int onServerName(SSL* ssl, int* alert, void* arg);
  std::vector<std::unique_ptr<boost::asio::ssl::context>> contexts_;  // [0]: default certificate
};

}  // namespace sidetrace::proxy
