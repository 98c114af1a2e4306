#pragma once
// A minimal HTTP/1.1 client for tests: raw bytes out, Beast's parser for responses in. Keeps the
// connection (keep-alive, pipelining) and returns exactly what came back, so tests can assert on
// every header and byte.

#include <boost/beast/http/parser.hpp>
#include <boost/beast/http/string_body.hpp>
#include <map>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "tests/integration/net.h"

namespace sidetrace::it {

using Headers = std::vector<std::pair<std::string, std::string>>;

struct HttpResponse {
  int status = 0;
  std::string reason;
  int version = 0;  // 10 or 11
  Headers headers;  // in wire order, names as received
  std::string body;
  bool keep_alive = false;
  bool chunked = false;

  // First value of a header (case-insensitive name), or nullopt.
  std::optional<std::string> header(std::string_view name) const;
  size_t headerCount(std::string_view name) const;
};

// A complete parsed response as an HttpResponse (shared by the plain and the TLS test client).
HttpResponse toHttpResponse(
    boost::beast::http::response_parser<boost::beast::http::string_body>& parser);

// Builds a request's bytes. Adds "Host: 127.0.0.1" unless headers has a host or version is 1.0
// with no_host; adds Content-Length when body is non-empty and no Transfer-Encoding is given.
std::string buildRequest(std::string_view method, std::string_view target, const Headers& headers,
                         std::string_view body = {}, std::string_view version = "HTTP/1.1",
                         bool add_host = true);

class HttpConnection {
 public:
  // Connects to 127.0.0.1:port; check connected().
  explicit HttpConnection(uint16_t port);
  bool connected() const { return sock_.valid(); }
  TcpSocket& socket() { return sock_; }

  bool send(std::string_view bytes) { return sock_.sendAll(bytes); }
  // Reads one response (a 1xx counts as one). `head_request` marks a response to HEAD (no body).
  // nullopt on timeout, close before a complete response, or parse error (see lastError()).
  std::optional<HttpResponse> readResponse(Millis timeout = Millis(10000),
                                           bool head_request = false);
  // send(buildRequest(...)) + readResponse().
  std::optional<HttpResponse> request(std::string_view method, std::string_view target,
                                      const Headers& headers = {}, std::string_view body = {},
                                      Millis timeout = Millis(10000));
  // Bytes received but not consumed by a response (e.g. tunnelled data after a 101).
  std::string& leftover() { return buf_; }
  const std::string& lastError() const { return error_; }
  // True if the server closes the connection within timeout.
  bool waitClosed(Millis timeout = Millis(3000)) { return sock_.waitClosed(timeout); }

 private:
  TcpSocket sock_;
  std::string buf_;
  std::string error_;
};

// One request on a fresh connection; nullopt on failure.
std::optional<HttpResponse> httpRequest(uint16_t port, std::string_view method,
                                        std::string_view target, const Headers& headers = {},
                                        std::string_view body = {}, Millis timeout = Millis(10000));

// Case-insensitive ASCII compare.
bool iequals(std::string_view a, std::string_view b);

}  // namespace sidetrace::it
