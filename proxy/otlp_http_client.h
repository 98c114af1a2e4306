#pragma once
// The OTLP/HTTP exporter's transport (tracing/http_transport.h): the proxy's own HTTP/1.1 client
// stack — asio sockets, asio::ssl over OpenSSL, the llhttp codec of proxy/http1_codec.h — driven
// blocking-style from the export thread on a private io_context, so export I/O never touches a
// worker loop. One keep-alive connection, reused across exports and re-opened after any failure.
//
// https: TLS 1.2 or later, SNI, the peer verified against the system CA store or
// cfg.tls.ca_file, and the certificate's names checked against the URL's host.

#include <memory>

#include "config/config.h"
#include "tracing/http_transport.h"

namespace sidetrace::proxy {

// For cfg.endpoint (an http:// or https:// URL). Throws std::runtime_error when the TLS settings
// cannot be used (an unreadable CA file): a startup failure, exit 2.
std::unique_ptr<tracing::HttpTransport> makeOtlpHttpTransport(const config::ExporterConfig& cfg);

}  // namespace sidetrace::proxy
