#include "upstream/tls_client_context.h"

#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/x509v3.h>

#include <spdlog/spdlog.h>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <stdexcept>

#include "upstream/tls_files.h"

#include "upstream/cluster.h"

namespace sidetrace::upstream {

namespace asio = boost::asio;

namespace {

// ALPN wire format: one length-prefixed protocol name.
constexpr unsigned char kAlpnH2[] = {2, 'h', '2'};
constexpr unsigned char kAlpnHttp11[] = {8, 'h', 't', 't', 'p', '/', '1', '.', '1'};

[[noreturn]] void fail(const std::string& key, const std::string& msg) {
  upstream::tlsConfigError(key, msg);
}
using upstream::opensslReason;
using File = upstream::TlsFile;

void loadClientCertificate(SSL_CTX* ctx, const config::UpstreamTlsConfig& tls,
                           const std::string& key_prefix) {
  const std::string cert_key = key_prefix + ".cert";
  const std::string key_key = key_prefix + ".key";
  { File probe(tls.cert, cert_key); }
  ERR_clear_error();
  if (SSL_CTX_use_certificate_chain_file(ctx, tls.cert.c_str()) != 1) {
    fail(cert_key, "no PEM certificate chain in '" + tls.cert + "': " + opensslReason());
  }
  EVP_PKEY* pkey = nullptr;
  {
    File f(tls.key, key_key);
    pkey = PEM_read_PrivateKey(f.f, nullptr, nullptr, nullptr);
  }
  if (pkey == nullptr) {
    fail(key_key, "no PEM private key in '" + tls.key + "': " + opensslReason());
  }
  const bool ok = SSL_CTX_use_PrivateKey(ctx, pkey) == 1 && SSL_CTX_check_private_key(ctx) == 1;
  EVP_PKEY_free(pkey);
  if (!ok) {
    fail(key_key, "the private key in '" + tls.key + "' does not match the certificate in '" +
                      tls.cert + "' (" + opensslReason() + ")");
  }
}

// Where prepare() leaves the connection's TlsSessionSlot for onNewSession. Not SSL app data:
// asio's ssl::stream owns that slot.
int sessionSlotIndex() {
  static const int index = SSL_get_ex_new_index(0, nullptr, nullptr, nullptr, nullptr);
  return index;
}

}  // namespace

TlsClientContext::TlsClientContext(const config::UpstreamTlsConfig& tls,
                                   const std::string& protocol, const std::string& key_prefix)
    : ctx_(asio::ssl::context::tls_client), verify_(!tls.insecure_skip_verify) {
  SSL_CTX* c = ctx_.native_handle();
  SSL_CTX_set_min_proto_version(c, TLS1_2_VERSION);
  SSL_CTX_set_options(c, SSL_OP_NO_COMPRESSION | SSL_OP_NO_RENEGOTIATION);
  const bool h2 = protocol == "http2";
  if (SSL_CTX_set_alpn_protos(c, h2 ? kAlpnH2 : kAlpnHttp11,
                              h2 ? sizeof kAlpnH2 : sizeof kAlpnHttp11) != 0) {
    fail(key_prefix, "ALPN refused: " + opensslReason());
  }
  // Sessions reach TlsSessionSlot through the callback only (see the header).
  SSL_CTX_set_session_cache_mode(c, SSL_SESS_CACHE_CLIENT | SSL_SESS_CACHE_NO_INTERNAL_STORE);
  SSL_CTX_sess_set_new_cb(c, onNewSession);

  // Bad files fail the start even when verification is off: the setting is then likely a mistake
  // that would bite once it is switched back on.
  if (!tls.ca_file.empty()) {
    const std::string ca_key = key_prefix + ".ca_file";
    { File probe(tls.ca_file, ca_key); }
    ERR_clear_error();
    if (SSL_CTX_load_verify_locations(c, tls.ca_file.c_str(), nullptr) != 1) {
      fail(ca_key, "no PEM CA certificate in '" + tls.ca_file + "': " + opensslReason());
    }
  } else if (SSL_CTX_set_default_verify_paths(c) != 1) {
    fail(key_prefix, "cannot load the system CA store: " + opensslReason());
  }
  if (!tls.cert.empty()) {
    loadClientCertificate(c, tls, key_prefix);
  }
  SSL_CTX_set_verify(c, verify_ ? SSL_VERIFY_PEER : SSL_VERIFY_NONE, nullptr);
  if (!verify_) {
    spdlog::warn("{}.insecure_skip_verify: upstream certificates and names are not verified",
                 key_prefix);
  }
}

void TlsClientContext::prepare(SSL* ssl, const Endpoint& ep, TlsSessionSlot& slot) const {
  if (!ep.tls_sni.empty()) {
    SSL_set_tlsext_host_name(ssl, ep.tls_sni.c_str());
  }
  if (verify_) {
    if (ep.tls_name_is_ip) {
      X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(ssl), ep.tls_name.c_str());
    } else {
      SSL_set_hostflags(ssl, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
      SSL_set1_host(ssl, ep.tls_name.c_str());
    }
  }
  if (slot.session) {
    SSL_set_session(ssl, slot.session.get());
  }
  SSL_set_ex_data(ssl, sessionSlotIndex(), &slot);
}

int TlsClientContext::onNewSession(SSL* ssl, SSL_SESSION* session) {
  auto* slot = static_cast<TlsSessionSlot*>(SSL_get_ex_data(ssl, sessionSlotIndex()));
  if (slot == nullptr || SSL_SESSION_is_resumable(session) != 1) {
    return 0;  // not kept: OpenSSL frees it
  }
  slot->session.reset(session);
  return 1;  // the slot now holds the reference OpenSSL passed us
}

}  // namespace sidetrace::upstream
