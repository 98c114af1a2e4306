#pragma once
// gzip (RFC 1952) bodies for OTLP/HTTP `Content-Encoding: gzip`, through zlib. zlib stays out of
// this header.

#include <memory>
#include <string>
#include <string_view>

namespace sidetrace::tracing {

class GzipCompressor {
 public:
  GzipCompressor();
  ~GzipCompressor();
  GzipCompressor(const GzipCompressor&) = delete;
  GzipCompressor& operator=(const GzipCompressor&) = delete;

  // Overwrites out with one gzip member holding `in` (out's capacity and zlib's state are reused
  // between calls). False only when zlib fails (out of memory).
  bool compress(std::string_view in, std::string& out);

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace sidetrace::tracing
