#pragma once
// http:// and https:// URLs as the OTLP/HTTP exporter needs them: where to connect, what to put in
// the request line and the Host header. Parsed once at startup (validate() and the exporter use the
// same rule, so a URL that passes --validate is one the exporter can use).

#include <cstdint>
#include <string>
#include <string_view>

namespace sidetrace::config {

struct HttpUrl {
  bool tls = false;    // https
  std::string host;    // DNS name or IP literal; IPv6 without brackets
  uint16_t port = 0;   // explicit, else 80 / 443
  std::string target;  // origin-form path and query, "/" when the URL has none

  // Host header value: host, bracketed if IPv6, with ":port" unless it is the scheme's default.
  std::string authority() const;
};

// Parses "http[s]://host[:port][/path][?query]". Throws ConfigError saying what is wrong (no
// scheme, other scheme, user info, empty host, bad port, fragment).
HttpUrl parseHttpUrl(const std::string& url);

// An OTLP/gRPC endpoint as grpc++ takes it: "http://host[:port]" or "https://host[:port]" (the
// OTLP form; a path is ignored, gRPC's path is the method), "host:port", or a Unix socket
// ("unix:/path", "unix:///path", "unix-abstract:name": a collector on the same node, reached
// without TCP). Without the check a typo, or a word like "console", reached grpc++ as a DNS name
// and every export failed at run time instead of the config failing at start.
struct GrpcEndpoint {
  std::string target;  // for grpc::CreateChannel: host[:port] as written, or the unix: target
  bool tls = false;    // https
};
// Throws ConfigError saying what is wrong.
GrpcEndpoint parseGrpcEndpoint(const std::string& endpoint);

// The OTLP/HTTP traces URL for an endpoint written in the config file: used as-is when it has a
// path other than "/" (the per-signal endpoint rule of the OTLP exporter spec), else with
// "/v1/traces" appended (a collector base URL such as http://collector:4318).
std::string otlpHttpTracesUrl(std::string_view endpoint);

}  // namespace sidetrace::config
