#pragma once
// A blocking TLS client for tests, on OpenSSL's C API: connects to 127.0.0.1:port, handshakes
// with the options given (SNI, CA to verify with, client certificate, protocol ceiling, a session
// to resume), then sends HTTP/1.1 requests and reads responses (Beast's parser) on the one
// connection. Reports what was negotiated (certificate presented, ALPN, version, resumption).

#include <openssl/ssl.h>

#include <memory>
#include <optional>
#include <string>

#include "tests/integration/http_client.h"
#include "tests/integration/net.h"

namespace sidetrace::it {

using TlsSession = std::shared_ptr<SSL_SESSION>;

struct TlsClientOptions {
  std::string sni;        // "" sends none
  std::string ca_file;    // verify the server's chain against it (not its name); "" = no check
  std::string cert_file;  // client certificate (PEM) and its key; "" = none
  std::string key_file;
  // 0: OpenSSL's defaults. Else the highest version offered, e.g. TLS1_1_VERSION; the client then
  // also allows everything down to TLS 1.0 (security level 0), so the server is what refuses.
  int max_version = 0;
  TlsSession resume;  // offer this session
  bool alpn = true;   // send ALPN: http/1.1, preceded by h2 if offer_h2
  // This client speaks HTTP/1.1 only, so by default it offers only that (as such clients do);
  // true makes it offer h2 too, to probe what a listener negotiates (then send no requests).
  bool offer_h2 = false;
};

class TlsConnection {
 public:
  TlsConnection(uint16_t port, const TlsClientOptions& options = {});
  ~TlsConnection();
  TlsConnection(const TlsConnection&) = delete;
  TlsConnection& operator=(const TlsConnection&) = delete;

  // The handshake completed (from the client's side: with TLS 1.3 a server may still refuse the
  // client certificate after this, on the first read).
  bool handshakeOk() const { return handshake_ok_; }
  // OpenSSL's reason for the last failure ("" if none).
  const std::string& error() const { return error_; }

  std::optional<HttpResponse> request(std::string_view method, std::string_view target,
                                      const Headers& headers = {}, Millis timeout = Millis(10000));

  // Raw bytes over the TLS connection (e.g. after a 101), and reading until `needle` arrived;
  // leftover() holds what was read past the last response.
  bool send(std::string_view bytes);
  bool readUntil(std::string_view needle);
  std::string& leftover() { return buf_; }

  std::string peerCommonName() const;  // CN of the certificate the server presented
  std::string alpn() const;            // negotiated protocol, "" if none
  std::string version() const;         // e.g. "TLSv1.3"
  bool sessionReused() const;
  // The session to resume later; with TLS 1.3 it arrives after the handshake, so read a response
  // first. Null if none is resumable.
  TlsSession session() const;
  // True if the server closes the connection within timeout (reads and discards until then).
  bool waitClosed(Millis timeout = Millis(3000));

 private:
  bool readSome(std::string& out);
  void fail(const std::string& what);

  TcpSocket sock_;
  SSL_CTX* ctx_ = nullptr;
  SSL* ssl_ = nullptr;
  bool handshake_ok_ = false;
  std::string error_;
  std::string buf_;
};

}  // namespace sidetrace::it
