#include "proxy/tls_context.h"

#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <stdexcept>

#include "upstream/tls_files.h"

namespace sidetrace::proxy {

namespace asio = boost::asio;

namespace {

// Mozilla's "intermediate" TLS 1.2 list without DHE: forward secrecy and AEAD only.
constexpr const char* kTls12Ciphers =
    "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:"
    "ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384:"
    "ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305";

// ALPN wire format, in our order of preference: HTTP/2 first when the client offers it.
constexpr unsigned char kAlpn[] = {2, 'h', '2', 8, 'h', 't', 't', 'p', '/', '1', '.', '1'};

[[noreturn]] void fail(const std::string& key, const std::string& msg) {
  upstream::tlsConfigError(key, msg);
}
using upstream::opensslReason;
using File = upstream::TlsFile;

int selectAlpn(SSL*, const unsigned char** out, unsigned char* outlen, const unsigned char* in,
               unsigned int inlen, void*) {
  unsigned char* selected = nullptr;
  if (SSL_select_next_proto(&selected, outlen, kAlpn, sizeof kAlpn, in, inlen) !=
      OPENSSL_NPN_NEGOTIATED) {
    return SSL_TLSEXT_ERR_NOACK;  // no common protocol: go on without ALPN (HTTP/1.1)
  }
  *out = selected;
  return SSL_TLSEXT_ERR_OK;
}

void loadCertificate(SSL_CTX* ctx, const config::TlsCertificate& c, const std::string& key_prefix) {
  const std::string cert_key = key_prefix + ".cert";
  const std::string key_key = key_prefix + ".key";
  { File probe(c.cert, cert_key); }  // a clear message for a missing or unreadable file
  ERR_clear_error();
  if (SSL_CTX_use_certificate_chain_file(ctx, c.cert.c_str()) != 1) {
    fail(cert_key, "no PEM certificate chain in '" + c.cert + "': " + opensslReason());
  }
  EVP_PKEY* pkey = nullptr;
  {
    File f(c.key, key_key);
    pkey = PEM_read_PrivateKey(f.f, nullptr, nullptr, nullptr);
  }
  if (pkey == nullptr) {
    fail(key_key, "no PEM private key in '" + c.key + "': " + opensslReason());
  }
  const bool ok = SSL_CTX_use_PrivateKey(ctx, pkey) == 1 && SSL_CTX_check_private_key(ctx) == 1;
  EVP_PKEY_free(pkey);
  if (!ok) {
    fail(key_key, "the private key in '" + c.key + "' does not match the certificate in '" +
                      c.cert + "' (" + opensslReason() + ")");
  }
}

}  // namespace

TlsServerContext::TlsServerContext(const config::TlsConfig& tls, const std::string& key_prefix) {
  std::vector<std::pair<config::TlsCertificate, std::string>> certs;  // certificate, its key path
  certs.emplace_back(config::TlsCertificate{tls.cert, tls.key}, key_prefix);
  for (size_t i = 0; i < tls.certificates.size(); ++i) {
    certs.emplace_back(tls.certificates[i],
                       key_prefix + ".certificates[" + std::to_string(i) + "]");
  }
  // The session id context scopes cached sessions to this listener; with client verification on,
  // OpenSSL refuses to resume without one. At most SSL_MAX_SID_CTX_LENGTH bytes.
  std::string sid = "sidetrace/" + key_prefix;
  sid.resize(std::min<size_t>(sid.size(), SSL_MAX_SID_CTX_LENGTH));

  for (const auto& [cert, prefix] : certs) {
    auto ctx = std::make_unique<asio::ssl::context>(asio::ssl::context::tls_server);
    SSL_CTX* c = ctx->native_handle();
    SSL_CTX_set_min_proto_version(c, TLS1_2_VERSION);
    SSL_CTX_set_options(
        c, SSL_OP_NO_COMPRESSION | SSL_OP_NO_RENEGOTIATION | SSL_OP_CIPHER_SERVER_PREFERENCE);
    if (SSL_CTX_set_cipher_list(c, kTls12Ciphers) != 1) {
      fail(key_prefix, "cipher list refused: " + opensslReason());
    }
    // OpenSSL's record buffers (about 34 KiB) are freed while a connection has nothing in flight,
    // as nginx does: idle keep-alive connections are most of them.
    SSL_CTX_set_mode(c, SSL_MODE_RELEASE_BUFFERS);
    SSL_CTX_set_session_cache_mode(c, SSL_SESS_CACHE_SERVER);
    SSL_CTX_set_session_id_context(c, reinterpret_cast<const unsigned char*>(sid.data()),
                                   static_cast<unsigned>(sid.size()));
    SSL_CTX_set_alpn_select_cb(c, selectAlpn, nullptr);
    loadCertificate(c, cert, prefix);
    if (!tls.client_ca.empty()) {
      // Every context verifies: after an SNI switch the connection uses the new context's store.
      const std::string ca_key = key_prefix + ".client_ca";
      { File probe(tls.client_ca, ca_key); }
      ERR_clear_error();
      if (SSL_CTX_load_verify_locations(c, tls.client_ca.c_str(), nullptr) != 1) {
        fail(ca_key, "no PEM CA certificate in '" + tls.client_ca + "': " + opensslReason());
      }
      if (STACK_OF(X509_NAME)* names = SSL_load_client_CA_file(tls.client_ca.c_str())) {
        SSL_CTX_set_client_CA_list(c, names);  // named in the certificate request
      }
      SSL_CTX_set_verify(
          c, SSL_VERIFY_PEER | (tls.require_client_cert ? SSL_VERIFY_FAIL_IF_NO_PEER_CERT : 0),
          nullptr);
    }
    contexts_.push_back(std::move(ctx));
  }
  if (contexts_.size() > 1) {
    SSL_CTX* c = contexts_.front()->native_handle();
    SSL_CTX_set_tlsext_servername_callback(c, onServerName);
    SSL_CTX_set_tlsext_servername_arg(c, this);
  }
}

int TlsServerContext::onServerName(SSL* ssl, int*, void* arg) {
  auto* self = static_cast<TlsServerContext*>(arg);
  const char* name = SSL_get_servername(ssl, TLSEXT_NAMETYPE_host_name);
  if (name == nullptr) {
    return SSL_TLSEXT_ERR_OK;  // no SNI: the default certificate
  }
  const size_t len = std::strlen(name);
  for (size_t i = 0; i < self->contexts_.size(); ++i) {
    SSL_CTX* c = self->contexts_[i]->native_handle();
    // X509_check_host: SAN DNS names (wildcards included), the CN only when there are none.
    if (X509_check_host(SSL_CTX_get0_certificate(c), name, len, 0, nullptr) == 1) {
      if (i != 0) {
        SSL_set_SSL_CTX(ssl, c);
      }
      return SSL_TLSEXT_ERR_OK;
    }
  }
  return SSL_TLSEXT_ERR_OK;  // no match: the default certificate
}

}  // namespace sidetrace::proxy
