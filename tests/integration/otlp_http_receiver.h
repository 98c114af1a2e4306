#pragma once
// A fake OTLP/HTTP collector, written with Boost.Beast (an HTTP implementation independent of
// sidetrace's own client): POSTs on 127.0.0.1:0 over plain HTTP or HTTPS, recorded with their
// headers and bodies. Bodies are gunzipped (Content-Encoding: gzip) and decoded with the
// generated protobuf classes (application/x-protobuf) or protobuf's JSON parser after checking the
// OTLP/JSON rules (application/json, tests/support/otlp_json_check.h). Answers can be scripted
// (503, 429 + Retry-After, 400) and successes can carry an OTLP partial success.

#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "tests/integration/http_client.h"
#include "tests/integration/otlp_receiver.h"

namespace sidetrace::it {

// One request as it arrived, and what it was answered.
struct HttpExport {
  std::string method;
  std::string target;
  Headers headers;           // wire order
  std::string raw_body;      // as sent (compressed when Content-Encoding: gzip)
  std::string body;          // after gunzip
  std::string decode_error;  // "" when the body decoded as an ExportTraceServiceRequest
  size_t spans = 0;          // spans in the body
  std::string sni;           // server name the client sent in its TLS hello ("" if none / plain)
  int answered = 0;          // the status sent back
  std::chrono::steady_clock::time_point at;

  std::optional<std::string> header(std::string_view name) const;
};

struct HttpAnswer {
  int status = 200;
  Headers headers;
  std::string body;
};

class OtlpHttpReceiver {
 public:
  struct TlsFiles {
    std::string cert_file;
    std::string key_file;
  };
  // Plain HTTP without tls; HTTPS with the given certificate chain and key.
  explicit OtlpHttpReceiver(std::optional<TlsFiles> tls = std::nullopt);
  ~OtlpHttpReceiver();
  OtlpHttpReceiver(const OtlpHttpReceiver&) = delete;
  OtlpHttpReceiver& operator=(const OtlpHttpReceiver&) = delete;

  uint16_t port() const;
  // The next requests are answered with these, in order; then every request gets `fallback`
  // (default: 200 with an ExportTraceServiceResponse in the request's encoding).
  void script(std::vector<HttpAnswer> answers);
  void answerAll(std::optional<HttpAnswer> fallback);
  // 200 answers carry a partial success rejecting this many spans (0: none).
  void rejectInEachResponse(int64_t spans);

  std::vector<HttpExport> exports() const;  // every request, in arrival order
  size_t failedHandshakes() const;          // TLS handshakes the client did not complete
  // Spans of the requests answered 2xx (a retried request counts once, when it succeeded).
  std::vector<FlatSpan> spans() const;
  std::vector<FlatSpan> waitForSpans(size_t n, std::chrono::milliseconds timeout);
  std::vector<HttpExport> waitForExports(size_t n, std::chrono::milliseconds timeout);

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace sidetrace::it
