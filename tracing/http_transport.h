#pragma once
// The seam between the OTLP/HTTP exporter and the network. tracing/ owns the protocol (bodies,
// headers, retries, Retry-After, partial success); the transport owns sockets, TLS, HTTP/1.1
// framing and connection reuse. The real one is the proxy's own asio client
// (proxy/otlp_http_client.h, built on the proxy's HTTP/1 codec); tests inject a fake. Keeping the
// client in proxy/ keeps the folder rule: tracing never includes proxy/.

#include <chrono>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "config/config.h"

namespace sidetrace::tracing {

using HttpHeaders = std::vector<std::pair<std::string, std::string>>;

// What one POST came back with.
struct HttpExchangeResult {
  int status = 0;           // the HTTP status; 0 when no response arrived (then `error` says why)
  std::string error;        // connect / TLS / timeout / reset / unparseable response
  std::string retry_after;  // the Retry-After header, "" if absent
  std::string content_type;
  std::string body;  // decoded (de-chunked); bounded by the transport
};

class HttpTransport {
 public:
  virtual ~HttpTransport() = default;
  // POSTs `body` to the URL the transport was made for, with `headers` added to the ones the
  // transport writes itself (Host, Content-Length). Blocks until a complete response, a failure,
  // or `deadline`, whichever comes first. Called from the export thread only, one call at a time
  // (so one connection, kept alive between calls, is all a transport needs).
  virtual HttpExchangeResult post(const HttpHeaders& headers, std::string_view body,
                                  std::chrono::steady_clock::time_point deadline) = 0;
  // Drops any kept-alive connection; a later post() connects again. Called at shutdown.
  virtual void close() {}
};

// Builds the transport for cfg.endpoint (an http:// or https:// URL) and cfg.tls. Runs once at
// startup; throws std::exception with a message on unusable settings (e.g. an unreadable CA file).
using HttpTransportFactory =
    std::function<std::unique_ptr<HttpTransport>(const config::ExporterConfig& cfg)>;

}  // namespace sidetrace::tracing
